"""``gmp``: gradual magnitude pruning of weights (Zhu & Gupta, 2017).

The sparse core enforces the masks (gradient masking, exact zeros, target sync) and owns the
score (:meth:`~sparserl.sparse.SparseTraining.prune_by_magnitude`: each layer keeps its
largest-|w| weights) and the schedule (:mod:`sparserl.sparse.schedules`: the prune window and
the cubic ramp s_t = s_f (1 - (1 - p)^3)); this method ties them to a network's updates:
at every event of the ``prune_start`` .. ``prune_end`` window (every ``prune_every``
updates) the sparsity steps up the ramp. Pruned weights never come back.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..sparse import PruneWindow, SparseTraining, gmp_sparsity
from .base import network_updates
from .options import GMPOptions, MaskOptions
from .sparse import SparsePlugin
from .structured import PruningMethod


class GMPPlugin(SparsePlugin):
    def __init__(self, sparse: SparseTraining, targets: list[nn.Module], batch_size: int, final_sparsity: float,
                 start: int, end: int, every: int):
        super().__init__(sparse, targets, batch_size, count_topology_flops=False)
        self.final = final_sparsity
        self.window = PruneWindow(start, end, every)  # the events (the same rule as structured pruning)
        self.updates = 0   # this network's optimizer steps so far (the prune window's clock)
        self.current = 0.0
        self.paused = False

    def set_paused(self, paused: bool) -> None:
        self.paused = paused

    @torch.no_grad()
    def after_optimizer_step(self) -> bool:
        super().after_optimizer_step()
        self.updates += 1
        if self.paused or not self.window.is_due(self.updates):  # the window's end event reaches s_f
            return False
        target = gmp_sparsity(self.updates, self.window.start, self.window.end, self.final)
        if target <= self.current:
            return False
        self.sparse.prune_by_magnitude(target)
        self.current = target
        self.after_target_update()
        return True

    def extra_train_flops(self) -> float:
        return 0.0

    def summary(self) -> dict:  # under "method_state" in summary.json
        return {"sparsity": self.sparse.sparsity(), "gmp_target": self.current,
                "layer_sparsity": self.sparse.layer_sparsities()}

    def state_dict(self) -> dict:
        return {"sparse": self.sparse.state_dict(), "step": self.updates, "current": self.current,
                "paused": self.paused}

    def load_state_dict(self, state: dict) -> None:
        self.sparse.load_state_dict(state["sparse"])
        # the key stays "step" so that older checkpoints resume
        self.updates, self.current, self.paused = int(state["step"]), float(state["current"]), bool(state["paused"])
        self.after_target_update()


class GMP(PruningMethod):
    name = "gmp"
    summary_line = "gradual magnitude pruning of weights, cubic schedule to --gmp-sparsity"
    OPTION_BLOCKS = (GMPOptions, MaskOptions, *PruningMethod.OPTION_BLOCKS)

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        if cfg.sparse_backend == "csr":
            # its masks start dense and shrink by set_masks, which the compressed layers do not take
            raise UserError("--sparse-backend csr applies to --method static, set, rigl, rlx2; --method gmp runs "
                            "its masks on the masked backend; allowed with gmp: --sparse-backend masked or auto")

    def build(self, network, optimizer, targets, update_period, planned_updates, *, role, index=0):
        opts = self.options
        updates = network_updates(planned_updates, update_period)
        sparse = SparseTraining(network, optimizer, 0.0, allocation=opts.allocation, updater="static",
                                reset_optimizer_state=opts.reset_adam,
                                generator=torch.Generator().manual_seed(self.cfg.seed * 1000 + index))
        return GMPPlugin(sparse, targets, self.cfg.batch_size, opts.gmp_sparsity, int(opts.prune_start * updates),
                         max(1, int(opts.prune_end * updates)), opts.prune_every)
