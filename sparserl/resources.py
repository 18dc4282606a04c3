"""How much memory a config will need, checked against the machine before a run starts.

``--hidden 1000000000``, 200,000 hidden layers or ``--batch-size 5e7`` used to fail minutes in,
as a MemoryError traceback (or the kernel's OOM killer) with a half-made run directory and a
stale lock left behind. :func:`check_memory` estimates the bytes the networks (weights,
gradients, Adam moments, target copies), the replay buffer and one minibatch's activations
need, and refuses a config whose estimate exceeds the memory this process may use, in one
line naming the options to lower. The estimate is an order of magnitude, deliberately on the
low side (it counts float32 tensors only), so a config that fits is never refused.
"""
from __future__ import annotations

import os
from pathlib import Path

from .algos import AGENTS
from .errors import UserError

#: per weight: the weight, its gradient, Adam's two moments, the target copy
COPIES_PER_WEIGHT = 5
FLOAT = 4


def machine_memory() -> int | None:
    """Bytes this process may use: physical memory, or a smaller cgroup limit (containers)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def _mlp_weights(sizes: list[int]) -> int:
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def estimate_bytes(cfg, obs_dim: int = 1, act_dim: int = 1) -> dict[str, int]:
    """Lower-bound bytes per part of a run of ``cfg`` (``obs_dim``/``act_dim`` default to 1 when
    the env is not built yet; ``act_dim`` is the number of discrete actions or of action
    components). The algorithm says which MLPs it builds (``Agent.mlp_sizes``)."""
    nets = AGENTS[cfg.algo].mlp_sizes(obs_dim, act_dim, [int(h) for h in cfg.hidden])
    weights = sum(_mlp_weights(n) for n in nets) * COPIES_PER_WEIGHT * FLOAT
    capacity = min(int(cfg.buffer_size), max(int(cfg.steps), 1))
    per_transition = (2 * obs_dim + 2 * act_dim + 1) * FLOAT + 2
    buffer = capacity * per_transition
    nstep = int(cfg.nstep or 1)
    # a sampled minibatch (n-step windows) and the activations kept for backward, per network
    batch = int(cfg.batch_size) * (nstep * per_transition + sum(sum(n[1:]) for n in nets) * 2 * FLOAT)
    return {"networks": weights, "replay buffer": buffer, "minibatch": batch}


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:,.1f} GiB" if n >= 2 ** 28 else f"{n / 2 ** 20:,.0f} MiB"


def check_memory(cfg, obs_dim: int = 1, act_dim: int = 1, available: int | None = None) -> None:
    """Refuse ``cfg`` in one line if its estimate exceeds the machine's memory."""
    available = machine_memory() if available is None else available
    if not available:
        return
    parts = estimate_bytes(cfg, obs_dim, act_dim)
    need = sum(parts.values())
    if need > available:
        detail = ", ".join(f"{name} {_gib(n)}" for name, n in parts.items())
        raise UserError(f"this config needs at least {_gib(need)} of memory ({detail}), more than the "
                        f"{_gib(available)} this machine has; allowed: a smaller --hidden (now {len(cfg.hidden)} "
                        f"layer(s), widest {max(cfg.hidden)}), --buffer-size ({cfg.buffer_size}) or --batch-size "
                        f"({cfg.batch_size})")
