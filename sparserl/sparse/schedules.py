"""When and how much a network's structure changes: the one schedule module.

* :class:`TopologySchedule`: when SET / RigL / RLx2 drop and regrow connections, and how many.
* :class:`PruneWindow`: the prune events between a start and an end update (every ``every``
  updates from the start, and at the end), used by gradual magnitude pruning
  (``methods/gmp.py``) and structured pruning (``structured/threshold.py``).
* :func:`cubic_ramp` / :func:`gmp_sparsity`: the cubic sparsity ramp of Zhu & Gupta (2017),
  the target of both (weights for GMP, neurons for structured pruning).

``t`` always counts optimizer updates (gradient steps) of the network the schedule acts on,
not environment steps. In TD3 the actor is updated every 2nd critic step, so its ``t`` runs
at half the critic's rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass
class TopologySchedule:
    """Topology update every ``delta`` updates with cosine-decayed drop fraction.

    ``is_update_step(t)``: ``t > 0``, ``t % delta == 0``, ``t < t_end`` and ``t < stop_step``
    (if set). ``fraction(t) = drop_fraction / 2 * (1 + cos(pi * t / t_end))`` (RigL / RLx2,
    ``drop_fraction`` is zeta0). Per layer ``drop_count = int(fraction(t) * n_active)``.
    """

    delta: int
    drop_fraction: float = 0.5
    t_end: int = 1
    stop_step: Optional[int] = None

    def __post_init__(self):
        if isinstance(self.delta, bool) or not isinstance(self.delta, int) or self.delta <= 0:
            raise ValueError(f"delta {self.delta!r} must be a positive integer number of updates")
        if not 0.0 <= float(self.drop_fraction) <= 1.0:
            raise ValueError(f"drop_fraction {self.drop_fraction!r} is outside the allowed range 0..1")
        if isinstance(self.t_end, bool) or not isinstance(self.t_end, int) or self.t_end <= 0:
            raise ValueError(f"t_end {self.t_end!r} must be a positive integer number of updates")
        if self.stop_step is not None and (not isinstance(self.stop_step, int) or self.stop_step < 0):
            raise ValueError(f"stop_step {self.stop_step!r} must be None or a non-negative integer")

    def is_update_step(self, t: int) -> bool:
        if t <= 0 or t % self.delta != 0 or t >= self.t_end:
            return False
        return self.stop_step is None or t < self.stop_step

    def fraction(self, t: int) -> float:
        t = min(max(t, 0), self.t_end)
        return float(self.drop_fraction) / 2.0 * (1.0 + math.cos(math.pi * t / self.t_end))

    def drop_count(self, t: int, n_active: int) -> int:
        return int(self.fraction(t) * n_active)

    def state_dict(self) -> dict:
        return {"delta": self.delta, "drop_fraction": float(self.drop_fraction),
                "t_end": self.t_end, "stop_step": self.stop_step}


@dataclass(frozen=True)
class PruneWindow:
    """Prune events between update ``start`` and update ``end``.

    An event happens at every ``t >= 1`` with ``start <= t <= end`` and ``(t - start) % every
    == 0``, and additionally at ``t == end`` (so the schedule's final target is always reached,
    whatever ``every``).  :meth:`progress` is how far through the window ``t`` is, in [0, 1].
    """

    start: int
    end: int
    every: int

    def is_due(self, t: int) -> bool:
        if t < 1 or t < self.start or t > self.end:
            return False
        return (t - self.start) % self.every == 0 or t == self.end

    def progress(self, t: int) -> float:
        """``clip((t - start) / (end - start), 0, 1)``; 1 from ``start`` on when ``end == start``."""
        if t < self.start:
            return 0.0
        if self.end == self.start:
            return 1.0
        return min(1.0, (t - self.start) / (self.end - self.start))


def cubic_ramp(progress: float, final: float, initial: float = 0.0) -> float:
    """The cubic ramp from ``initial`` to ``final`` at ``progress`` in [0, 1] (Zhu & Gupta 2017):
    ``final + (initial - final) * (1 - progress) ** 3`` -- fast early, flat at the end, when
    the network has less left to give."""
    return float(final + (initial - final) * (1.0 - progress) ** 3)


def gmp_sparsity(t: int, start: int, end: int, final_sparsity: float,
                 initial_sparsity: float = 0.0) -> float:
    """Cubic sparsity ramp of gradual magnitude pruning (Zhu & Gupta 2017).

    ``s_t = s_f + (s_i - s_f) * (1 - (t - start) / (end - start)) ** 3`` for
    ``start <= t <= end``; ``s_i`` before ``start`` and ``s_f`` after ``end``.
    """
    if end <= start:
        raise ValueError(f"gmp end {end!r} must be greater than start {start!r}")
    for label, s in (("final_sparsity", final_sparsity), ("initial_sparsity", initial_sparsity)):
        if not 0.0 <= s < 1.0:
            raise ValueError(f"{label} {s!r} is outside the allowed range 0 <= sparsity < 1")
    if t <= start:
        return float(initial_sparsity)
    if t >= end:
        return float(final_sparsity)
    return cubic_ramp((t - start) / (end - start), final_sparsity, initial_sparsity)
