"""Defects found in the second round's code review; each test failed before its fix."""
from __future__ import annotations

import pytest

from sparserl.config import TrainConfig, resolve
from sparserl.errors import UserError


def test_csr_without_adam_reset_is_refused_naming_the_two_options():
    cfg = TrainConfig(algo="td3", env="Pendulum-v1", method="rigl", steps=1000, sparse_backend="csr",
                      reset_adam=False)
    with pytest.raises(UserError) as info:
        resolve(cfg)
    message = str(info.value)
    assert "--sparse-backend csr" in message and "--reset-adam" in message
    assert "--actor-sparsity" not in message


def test_auto_without_adam_reset_resolves():  # auto then keeps every layer masked
    cfg = resolve(TrainConfig(algo="td3", env="Pendulum-v1", method="rigl", steps=1000, sparse_backend="auto",
                              reset_adam=False))
    assert cfg.sparse_backend == "auto" and cfg.reset_adam is False
