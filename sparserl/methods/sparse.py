"""Unstructured sparse training: ``static`` (SS), ``set`` and ``rigl``.

Every Linear weight of every network is masked through :class:`sparserl.sparse.SparseTraining`;
the updater decides which connections change, the schedule when and how many.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..sparse import SparseTraining
from ..sparse.flops import dense_gradient_extra_flops, forward_flops
from .base import Method, network_updates
from .options import MaskOptions, SparsityOptions, TopologyOptions


class SparsePlugin:
    """Unstructured masks (+ topology updates) on one network, through the agent's seam."""

    def __init__(self, sparse: SparseTraining, targets: list[nn.Module], batch_size: int,
                 count_topology_flops: bool = True):
        self.sparse, self.targets, self.batch_size = sparse, targets, batch_size
        dense, sparse_f = forward_flops(sparse.module)
        # A topology update needs the dense weight gradient on the minibatches it uses.
        self.extra_per_update = (dense_gradient_extra_flops(dense, sparse_f, batch_size * sparse.grad_accumulation)
                                 if count_topology_flops else 0.0)
        self.after_target_update()

    def penalty(self):
        return 0.0

    def before_optimizer_step(self) -> bool:
        return self.sparse.before_optimizer_step()

    def after_optimizer_step(self) -> bool:
        before = self.sparse.n_topology_updates
        self.sparse.after_optimizer_step()
        # the FLOP count of a network depends on its non-zero weights: a topology update
        # keeps the counts per layer, but a just-grown weight is 0 until it moves
        return self.sparse.n_topology_updates != before

    def after_target_update(self) -> None:
        self.sparse.sync(*self.targets)

    def set_paused(self, paused: bool) -> None:
        """Topology updates do not pause (only pruning schedules do)."""

    def extra_train_flops(self) -> float:
        return 0.0 if self.sparse.is_static else float(self.extra_per_update * self.sparse.n_topology_updates)

    def summary(self) -> dict:
        return {"sparsity": self.sparse.sparsity(), "topology_updates": self.sparse.n_topology_updates,
                "layer_sparsity": self.sparse.layer_sparsities()}

    def add_summary(self, out: dict, name: str) -> None:
        out.setdefault("method_state", {})[name] = self.summary()

    def metrics(self, name: str) -> dict:
        return {f"sparsity_{name}": round(self.sparse.sparsity(), 4)}

    def state_dict(self) -> dict:
        return self.sparse.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sparse.load_state_dict(state)
        self.after_target_update()


class SparseMethod(Method):
    """Masks on every network; ``updater`` = which connections change at topology updates."""

    name = "rigl"
    summary_line = "drop smallest |w|, grow largest |dense gradient|"
    OPTION_BLOCKS = (SparsityOptions, MaskOptions, TopologyOptions, *Method.OPTION_BLOCKS)
    DEFAULTS = {"grow": "gradient"}

    def updater(self) -> str:
        return {"gradient": "rigl", "random": "set"}[self.options.grow]

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        if cfg.grad_accumulation > cfg.topology_delta:
            # the dense gradient is accumulated over the minibatches just before a topology update
            raise UserError(f"--grad-accumulation {cfg.grad_accumulation} must not exceed --topology-delta "
                            f"{cfg.topology_delta} (the dense gradient is gathered between topology updates)")
        if cfg.sparse_backend == "csr" and not cfg.reset_adam:
            # compressed layers keep Adam moments for active connections only: nothing stale to keep
            raise UserError("--sparse-backend csr needs --reset-adam (it keeps optimizer state only for active "
                            "connections); allowed with --no-reset-adam: --sparse-backend masked or auto")

    def make_sparse(self, module: nn.Module, optimizer, sparsity: float, updates: int, *,
                    layers=None, generator: torch.Generator | None = None) -> SparseTraining:
        """The masks and topology updater of ``module`` under this method's options, over the
        ``updates`` gradient updates it gets (the native trainer's :meth:`build` and the SB3
        :class:`~sparserl.integrations.sb3.SparseTrainingCallback` both build through here).
        ``layers``: the Linear layers to mask (default: all)."""
        opts = self.options
        stop = None if opts.topology_stop is None else max(1, int(opts.topology_stop * updates))
        return SparseTraining(
            module, optimizer, sparsity, allocation=opts.allocation, init=opts.mask_init, updater=self.updater(),
            delta=opts.topology_delta, drop_fraction=opts.drop_fraction, planned_updates=updates, stop_step=stop,
            reset_optimizer_state=opts.reset_adam, skip_step_on_update=opts.skip_step_on_update,
            grad_accumulation=opts.grad_accumulation, regrow_dropped=opts.regrow_dropped,
            backend=opts.sparse_backend, layers=layers, generator=generator)

    def build(self, network, optimizer, targets, update_period, planned_updates, *, role, index=0):
        sparsity = self.options.sparsity_of(role)
        try:
            sparse = self.make_sparse(network, optimizer, sparsity, network_updates(planned_updates, update_period),
                                      generator=torch.Generator().manual_seed(self.cfg.seed * 1000 + index))
        except ValueError as exc:
            raise UserError(f"--{role}-sparsity {sparsity}: {exc}") from None
        for t in targets:  # targets start as exact copies of the masked online network
            t.load_state_dict(network.state_dict())
        return SparsePlugin(sparse, targets, self.cfg.batch_size)


class Static(SparseMethod):
    """A fixed sparse mask; the RLx2 paper's SS baseline is a random ERK mask."""

    name = "static"
    summary_line = "fixed sparse mask (ERK/uniform allocation; random mask = the paper's SS baseline)"
    DEFAULTS = {"mask_init": "random"}

    def updater(self) -> str:
        return "static"


class SET(SparseMethod):
    name = "set"
    summary_line = "drop smallest |w|, grow random, every --topology-delta updates, cosine drop fraction"
    DEFAULTS = {"grow": "random"}


class RigL(SparseMethod):
    name = "rigl"
