"""``rlx2`` (Tan et al., ICLR 2023): RigL topology evolution + a delayed multi-step TD
target + a dynamic-capacity replay buffer.

The n-step delay and the dynamic buffer are generic options implemented by
:class:`~sparserl.methods.base.Method` (so every method can be combined with them for
ablations); RLx2 is RigL whose defaults switch both on.
"""
from __future__ import annotations

from ..planning import planned_updates
from .sparse import RigL


class RLx2(RigL):
    name = "rlx2"
    summary_line = "rigl + delayed n-step target (--nstep 3, n = 1 for the first 10% of updates) + dynamic buffer"
    DEFAULTS = {**RigL.DEFAULTS, "nstep": 3, "dynamic_buffer": True}
    NSTEP_DELAY_FRACTION = 0.1  # SPEC §1.2: n = 1 for the first ~10% of updates

    @classmethod
    def derived(cls, cfg) -> None:
        if cfg.nstep_delay is None:
            cfg.nstep_delay = int(cls.NSTEP_DELAY_FRACTION * planned_updates(cfg))
        super().derived(cfg)
