"""How many gradient updates a run will make: what every schedule is planned over.

A leaf module (it imports nothing of sparserl) because both the config rules
(:mod:`~sparserl.config`) and the methods that derive options from the run length
(``rlx2``'s n-step delay) need it, and the config already imports the methods.
``cfg`` is any object with the run options used below (a ``TrainConfig``).
"""
from __future__ import annotations


def update_rounds(cfg, steps: int) -> int:
    """Update rounds in ``steps`` env steps. The loop updates after env step ``s`` (0-based)
    when ``s >= learning_starts`` and ``(s + 1) % train_freq == 0``: the multiples of
    ``train_freq`` in ``(learning_starts, steps]``."""
    return max(steps // cfg.train_freq - cfg.learning_starts // cfg.train_freq, 0)


def planned_updates(cfg) -> int:
    """Gradient updates of the critic / Q-network over the planned run (schedules count these):
    :func:`update_rounds` over ``schedule_steps`` times ``gradient_steps``."""
    steps = cfg.schedule_steps if cfg.schedule_steps is not None else cfg.steps
    return max(1, update_rounds(cfg, steps) * cfg.gradient_steps)
