"""The methods' typed options: small dataclasses ("blocks") that each method combines.

A method's options are declared once, here, as dataclass fields with a default, a one-line help
(the text of the ``--help`` flag) and the values they allow (see
:func:`sparserl.validation.option`). A method class names the blocks it reads
(:attr:`~sparserl.methods.base.Method.OPTION_BLOCKS`); :class:`~sparserl.config.TrainConfig`
is composed of the run options, the algorithms' options and the union of every registered
method's blocks, so the CLI keeps one flag per option and ``config.yaml`` keeps its flat keys,
while the method itself reads a typed object of only its own options
(:meth:`~sparserl.methods.base.Method.options_of`). The SB3 callbacks resolve their defaults
through the same blocks and the same method ``DEFAULTS``, so they cannot drift from the CLI.

A ``None`` default means "set by the method or derived from the rest of the config": the
method's ``DEFAULTS`` (e.g. ``rlx2``: ``nstep`` 3, ``dynamic_buffer`` on) or its ``derived``
rule fills it when the config is resolved.
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from ..sparse.allocation import ALLOCATIONS
from ..sparse.core import BACKENDS as SPARSE_BACKENDS
from ..sparse.masks import INITS as MASK_INITS
from ..structured import StructuredPruner
from ..structured.importance import IMPORTANCE_METHODS
from ..structured.regularizer import REG_MODES, REGULARIZERS
from ..structured.threshold import THRESHOLD_RULES, THRESHOLD_SCOPES
from ..validation import (NON_NEGATIVE, POSITIVE, UNIT, UNIT_OPEN_BOTTOM, UNIT_OPEN_TOP, between,
                          option)

#: n-step windows are gathered per sample, so n is bounded
MAX_NSTEP = 100


#: the pruner's own defaults are the structured options' defaults (the library owns them; the CLI,
#: the Python API and the SB3 callback read them from here)
_PRUNER = {k: p.default for k, p in inspect.signature(StructuredPruner.__init__).parameters.items()}


class OptionBlock:
    """Base of every option block: ``SECTION`` is the ``train --help`` section its flags are
    listed in, ``DESCRIPTION`` that section's one-line description."""

    SECTION: ClassVar[str] = ""
    DESCRIPTION: ClassVar[Optional[str]] = None


# --- generic: any method may combine with these (RLx2 turns both on) ------------------------
@dataclass
class MultiStepOptions(OptionBlock):
    SECTION = "RLx2"
    DESCRIPTION = "multi-step target and dynamic-capacity replay buffer (any method may use them)"
    nstep: Optional[int] = option(None, "multi-step TD target length n (default: 3 for rlx2, else 1; at most --steps)",
                                  check=between(1, MAX_NSTEP))
    nstep_delay: Optional[int] = option(None, "updates with n=1 before switching to n (rlx2 default: 10%)",
                                        check=NON_NEGATIVE)


@dataclass
class DynamicBufferOptions(OptionBlock):
    SECTION = "RLx2"
    dynamic_buffer: Optional[bool] = option(None, "dynamic-capacity replay buffer (default: on for rlx2, else off)")
    buffer_min: Optional[int] = option(None, "dynamic buffer: minimum capacity (at most --buffer-max)", check=POSITIVE,
                                       default_doc="100000, lowered to --buffer-max / --buffer-size if smaller")
    buffer_max: Optional[int] = option(None, "dynamic buffer: maximum capacity (at most --buffer-size)",
                                       check=POSITIVE, default_doc="--buffer-size")
    buffer_threshold: Optional[float] = option(None, "dynamic buffer: policy-distance threshold (default: 0.2 for "
                                               "mse, the reference; the same drift sqrt(0.4*|A|) for l2)",
                                               check=NON_NEGATIVE)
    buffer_check_every: int = option(10_000, "dynamic buffer: env steps between checks", check=POSITIVE)
    policy_distance: str = option("mse", "dynamic buffer: distance metric (mse: mean delta^2/2, the reference; "
                                  "l2: the paper's Euclidean distance)", ("mse", "l2"))
    buffer_shrink: str = option("reference", "dynamic buffer: eviction rule (reference: drop 10% of the size, no "
                                "cap; fraction: 10% and cap; to-threshold: until within the threshold, cap)",
                                ("reference", "fraction", "to-threshold"))


# --- unstructured sparsity (static, set, rigl, rlx2; tiny's size; gmp's masks) ----------------
@dataclass
class SparsityOptions(OptionBlock):
    SECTION = "sparse training"
    DESCRIPTION = "options of --method static, set, rigl, rlx2 (and tiny's size, gmp's masks)"
    actor_sparsity: float = option(0.9, "actor weight sparsity", check=UNIT_OPEN_TOP)
    critic_sparsity: float = option(0.9, "critic weight sparsity (both critics)", check=UNIT_OPEN_TOP)
    q_sparsity: float = option(0.9, "DQN Q-network weight sparsity", check=UNIT_OPEN_TOP)

    def sparsity_of(self, network: str) -> float:
        """The configured weight sparsity of a network (``actor``, ``critic`` or ``q``)."""
        return {"actor": self.actor_sparsity, "critic": self.critic_sparsity, "q": self.q_sparsity}[network]


@dataclass
class MaskOptions(OptionBlock):
    SECTION = "sparse training"
    allocation: str = option("erk", "layer-wise sparsity allocation", ALLOCATIONS)
    reset_adam: bool = option(True, "reset Adam moments of dropped and grown weights")
    sparse_backend: str = option("masked", "sparse execution: masked dense, csr kernels, or auto (measured per "
                                 "layer)", SPARSE_BACKENDS)


@dataclass
class TopologyOptions(OptionBlock):
    SECTION = "sparse training"
    mask_init: Optional[str] = option(None, "initial mask (default: random for static, else magnitude)", MASK_INITS)
    topology_delta: int = option(10_000, "gradient updates of a network between topology updates", check=POSITIVE)
    drop_fraction: float = option(0.5, "initial drop fraction zeta0 (cosine-annealed)", check=UNIT)
    topology_stop: Optional[float] = option(None, "stop topology updates after this fraction of updates",
                                            check=UNIT_OPEN_BOTTOM, default_doc="never stop")
    grow: Optional[str] = option(None, "growth criterion (default: by method)", ("gradient", "random"))
    grad_accumulation: int = option(1, "minibatches the RigL dense gradient is accumulated over (at most "
                                    "--topology-delta)", check=POSITIVE)
    regrow_dropped: bool = option(False, "let a connection dropped at a topology update be regrown in the same "
                                  "update, keeping its value (the RigL / RLx2 reference code's candidate set); off "
                                  "by default: it cost RigL about 40 % of its return on HalfCheetah "
                                  "(docs/RESULTS.md, RigL regression)")
    skip_step_on_update: bool = option(True, "skip the optimizer step on topology-update steps (reference)")


# --- pruning (structured, neuron-magnitude, gmp) ----------------------------------------------
@dataclass
class PruneWindowOptions(OptionBlock):
    """When pruning happens. 0.05 / 0.5: the winner of the CartPole part of
    benchmarks/suites/struct_sweep.yaml (seeds 100-101): pruning done by mid-run leaves half the
    run to recover (the old 0.1 / 0.8 recovered less)."""

    SECTION = "structured pruning"
    DESCRIPTION = "options of --method structured and neuron-magnitude, and of gmp"
    prune_every: int = option(_PRUNER["prune_every"],
                              "updates between prune events", check=POSITIVE)
    prune_start: float = option(_PRUNER["prune_start"],
                                "fraction of updates when pruning starts (below --prune-end)",
                                check=UNIT_OPEN_TOP)
    prune_end: float = option(_PRUNER["prune_end"],
                              "fraction of updates when pruning ends (the rest of the run recovers)",
                              check=UNIT_OPEN_BOTTOM)
    prune_guard: Optional[float] = option(None, "pause pruning while eval return is this fraction below its best",
                                          check=NON_NEGATIVE, default_doc="off")


@dataclass
class StructuredOptions(OptionBlock):
    SECTION = "structured pruning"
    importance: str = option(_PRUNER["importance"],
                             "neuron importance estimator", IMPORTANCE_METHODS)
    regularizer: str = option(_PRUNER["regularizer"],
                              "group penalty", REGULARIZERS)
    reg_lambda: float = option(_PRUNER["reg_lambda"],
                               "group-sparse regulariser strength lambda; with --reg-mode loss the weight of "
                               "lambda * sum_j c_j ||g_j|| in each network's loss (its pull depends on the loss scale "
                               "and Adam), with --reg-mode proximal the shrink of a neuron group's L2 norm per unit "
                               "learning rate per update (times c_j), the same meaning for every network",
                               check=NON_NEGATIVE)
    reg_mode: str = option(_PRUNER["reg_mode"],
                           "structured: how the group penalty acts: loss (added to the loss, through Adam; "
                           "never exactly zero) or proximal (group soft-threshold g_j *= max(0, 1 - "
                           "lr*lambda*c_j/||g_j||) after each optimizer step; exact zeros, independent of loss scale "
                           "and Adam)", REG_MODES)
    min_width: int = option(_PRUNER["min_width"],
                            "minimum neurons kept per hidden layer", check=POSITIVE)
    target_neuron_fraction: float = option(0.93, "structured: fraction of hidden neurons to remove by prune_end "
                                           "(the actor's; DQN's Q-network's)", check=UNIT_OPEN_TOP)
    critic_target_neuron_fraction: Optional[float] = option(None, "structured: fraction of hidden neurons to remove "
                                                            "from each critic MLP by prune_end (TD3/SAC)",
                                                            check=between(0, 1, low_open=True, high_open=True),
                                                            default_doc="--target-neuron-fraction")
    prune_networks: str = option("all", "structured: which networks are pruned: actor, critic (TD3/SAC only) or "
                                 "all (DQN: all, its one Q-network)", ("actor", "critic", "all"))
    threshold_scope: str = option(_PRUNER["scope"],
                                  "structured: prune each hidden layer to the target on its own (layer), "
                                  "or pool layer-normalised importance and the neuron budget over all hidden layers "
                                  "of an MLP (global; each layer keeps --min-width)", THRESHOLD_SCOPES)
    threshold_rule: str = option(_PRUNER["rule"],
                                 "structured: prune below a ramping multiple of the mean importance, capped "
                                 "by the cubic target (ramp); exactly the cubic target's least important (cubic); or "
                                 "below the ramping threshold capped only by the final target, which the last event "
                                 "then meets (threshold: importance sets the pace and, with --threshold-scope global, "
                                 "the widths)", THRESHOLD_RULES)
    recovery_reg_scale: float = option(_PRUNER["recovery_reg_scale"],
                                       "structured: --reg-lambda multiplier after --prune-end (the recovery "
                                       "phase; 0 = fine-tune the pruned network without the regulariser)",
                                       check=NON_NEGATIVE)


@dataclass
class GMPOptions(OptionBlock):
    SECTION = "structured pruning"
    gmp_sparsity: float = option(0.95, "GMP final weight sparsity", check=UNIT_OPEN_TOP)


#: every block, in the order their flags are listed (``train --help``) and their keys are
#: written to ``config.yaml``
BLOCKS: tuple[type, ...] = (SparsityOptions, MaskOptions, TopologyOptions, MultiStepOptions, DynamicBufferOptions,
                            StructuredOptions, PruneWindowOptions, GMPOptions)


def combined(name: str, blocks: tuple[type, ...]) -> type:
    """One dataclass with the fields of ``blocks`` (a method's typed options; the methods of
    every block are inherited, e.g. :meth:`SparsityOptions.sparsity_of`)."""
    return dataclasses.make_dataclass(name, [], bases=tuple(blocks))


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass of options (``Optional[int]`` ...)."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            hints.update(typing.get_type_hints(klass))
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
