"""Dynamic structured (neuron-level) pruning of MLP chains; imports nothing from RL code.

Parts: ``importance`` (activation / Taylor / magnitude neuron importance, EMA),
``regularizer`` (neuron-importance group-sparse penalty), ``threshold`` (dynamic threshold rule
and schedule), ``surgery`` (physical shrinking with mirrors and optimizer state, masking) and
``pruner`` (the :class:`StructuredPruner` facade algorithms use).
"""
from .importance import IMPORTANCE_METHODS, NeuronImportance, normalize_importance
from .pruner import StructuredPruner
from .regularizer import (REG_MODES, REGULARIZERS, group_norms, group_sparse_penalty, importance_coefficients,
                          proximal_group_shrink)
from .surgery import apply_neuron_masks, hidden_widths, resolve_chain, shrink
from .threshold import THRESHOLD_RULES, THRESHOLD_SCOPES, PruneSchedule, neurons_to_prune, neurons_to_prune_pooled

__all__ = [
    "StructuredPruner",
    "NeuronImportance", "IMPORTANCE_METHODS", "normalize_importance",
    "group_norms", "group_sparse_penalty", "importance_coefficients", "REGULARIZERS",
    "proximal_group_shrink", "REG_MODES",
    "PruneSchedule", "neurons_to_prune", "neurons_to_prune_pooled", "THRESHOLD_RULES", "THRESHOLD_SCOPES",
    "shrink", "apply_neuron_masks", "resolve_chain", "hidden_widths",
]
