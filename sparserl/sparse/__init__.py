"""Unstructured sparse training on any ``nn.Module`` + optimizer (imports nothing from RL).

Parts: ``allocation`` (uniform / ERK layer densities), ``masks`` (create, enforce, sync
targets, execution seam), ``updaters`` (static / SET / RigL: which connections change),
``schedules`` (when and how many; GMP ramp), ``optim_state`` (reset Adam moments of changed
entries), ``flops`` (parameter and FLOP accounting), ``csr`` (compressed layers and CSR
kernels: the ``csr`` execution backend), ``crossover`` (where CSR beats dense on
this machine, measured and cached), ``auto`` (the ``auto`` backend: CSR where the crossover
says so), ``core.SparseTraining`` (the facade).
"""
from .allocation import global_density, layer_densities, layer_nonzero_counts
from .core import BACKENDS, SparseTraining, make_execution
from .crossover import Crossover
from .auto import AutoExecution
from .csr import CsrExecution, CsrLayout, SparseLinear, csr_linear, feature_major_linear
from .flops import (LayerFlops, count_parameters, dense_gradient_extra_flops, format_table,
                    forward_flops, layer_flops, totals, training_flops_per_sample)
from .masks import (DENSE_MASKED, SparseExecution, apply_masks, attach_execution, count_active,
                    create_masks, detach_execution, linear_weight_names, mask_gradients, sync_masks,
                    weight_shapes)
from .optim_state import reset_optimizer_state
from .schedules import PruneWindow, TopologySchedule, cubic_ramp, gmp_sparsity
from .updaters import LayerChange, RigLUpdater, SETUpdater, StaticUpdater, Updater, make_updater

__all__ = [
    "SparseTraining", "BACKENDS", "make_execution",
    "CsrExecution", "AutoExecution", "CsrLayout", "SparseLinear", "csr_linear", "feature_major_linear", "Crossover",
    "layer_densities", "layer_nonzero_counts", "global_density",
    "create_masks", "apply_masks", "mask_gradients", "sync_masks", "count_active",
    "linear_weight_names", "weight_shapes",
    "SparseExecution", "DENSE_MASKED", "attach_execution", "detach_execution",
    "Updater", "StaticUpdater", "SETUpdater", "RigLUpdater", "LayerChange", "make_updater",
    "TopologySchedule", "PruneWindow", "cubic_ramp", "gmp_sparsity",
    "reset_optimizer_state",
    "LayerFlops", "layer_flops", "totals", "forward_flops", "training_flops_per_sample",
    "dense_gradient_extra_flops", "count_parameters", "format_table",
]
