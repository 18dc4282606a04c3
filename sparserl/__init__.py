"""sparserl: train small (sparse or structurally pruned) deep-RL agents.

Python API (Stable-Baselines3-shaped): ``from sparserl import TD3, SAC, DQN, load``.
Library parts for any torch model: :mod:`sparserl.sparse`, :mod:`sparserl.structured`.

Importing ``sparserl`` is cheap and has no side effects: the API classes are imported on
first use (so ``sparserl.runtime``, the numpy-only policy runtime, never pulls in torch).
"""
__version__ = "0.1.0"

_API = ("DQN", "TD3", "SAC", "load", "BaseAlgorithm")


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'sparserl' has no attribute {name!r}")


__all__ = list(_API)
