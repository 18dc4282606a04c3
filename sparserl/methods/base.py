"""What a training *method* is: one object that owns everything about it.

A method (dense, tiny, static, set, rigl, rlx2, structured, neuron-magnitude, gmp) is a
subclass of :class:`Method`, registered once in :mod:`sparserl.methods` (or at run time with
:func:`sparserl.methods.register_method`). It owns

* its **typed options** (``OPTION_BLOCKS``: the blocks of :mod:`sparserl.methods.options` it
  reads; ``Options`` is their combined dataclass and ``self.options`` the resolved values),
* its **defaults** (``DEFAULTS``: applied by :func:`sparserl.config.resolve` to options the
  user left unset, so the CLI, the Python API and the SB3 callbacks resolve to the same values),
* its **validation** (:meth:`validate`),
* how it **wraps a network and its optimizer** (:meth:`build`: one network in, its plugin out,
  driven by ``Agent.optimize`` / ``Agent.update_target``; :meth:`attach` calls it per network
  of an agent; :meth:`network_widths` when it changes the architecture),
* its **hooks** into the training loop (:meth:`on_start`, :meth:`nstep`,
  :meth:`after_update`, :meth:`after_env_step`, :meth:`after_eval`),
* its **state** for exact resume (:meth:`state_dict` / :meth:`load_state_dict`),
* its **metrics** and **summary** fields.

The trainer only calls these hooks; it never asks which method it is running. Generic
options that any method may combine with (``--nstep`` with its delay, ``--dynamic-buffer``)
are implemented here in the base class, so ``rigl --dynamic-buffer`` works and RLx2 is
simply "RigL whose defaults turn both on".
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
from torch import nn

from ..errors import UserError
from ..validation import coerce
from .options import DynamicBufferOptions, MultiStepOptions, combined, field_types


class Method:
    """Base class; the plain algorithm (``dense``) is this class with nothing attached."""

    name: ClassVar[str] = "dense"
    summary_line: ClassVar[str] = "the plain algorithm"
    #: the option blocks (:mod:`sparserl.methods.options`) this method reads
    OPTION_BLOCKS: ClassVar[tuple[type, ...]] = (MultiStepOptions, DynamicBufferOptions)
    #: the dataclass of this method's options (``OPTION_BLOCKS`` combined; made per subclass)
    Options: ClassVar[type]
    #: option -> value, applied to options the user left unset (``None``); a subclass's
    #: ``DEFAULTS`` extend its parent's
    DEFAULTS: ClassVar[dict[str, Any]] = {"nstep": 1, "dynamic_buffer": False, "mask_init": "magnitude"}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.Options = combined(f"{cls.__name__}Options", cls.OPTION_BLOCKS)
        if "DEFAULTS" in vars(cls):
            cls.DEFAULTS = {**super(cls, cls).DEFAULTS, **cls.DEFAULTS}

    def __init__(self, cfg=None, options=None):
        """From a resolved run config (the trainer), or from resolved ``options`` alone (the SB3
        callbacks, which have no run config: see :meth:`from_options`)."""
        self.cfg = cfg
        self.options = options if options is not None else self.options_of(cfg)
        self.dynamic = None          # buffers.DynamicCapacity when --dynamic-buffer
        self.buffer_log: dict = {}   # the last dynamic-buffer check
        self.action_scale = None

    # -- configuration ----------------------------------------------------------------
    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls.Options))

    @classmethod
    def options_of(cls, cfg) -> Any:
        """This method's typed options, read from a resolved config (the options of a method
        added with :func:`~sparserl.methods.register_method` that the config does not declare
        come from its ``method_options`` mapping)."""
        extra = getattr(cfg, "method_options", None) or {}
        return cls.Options(**{name: getattr(cfg, name) if hasattr(cfg, name) else extra[name]
                              for name in cls.option_names()})

    @classmethod
    def resolve_options(cls, given: dict, source: str, names=None, labels: dict | None = None) -> dict:
        """``given`` option values checked against their declarations (type, choices, range),
        and ``DEFAULTS`` or the declared default for what is unset or ``None``; over ``names``
        (default: all of this method's options). Unknown keys are one :class:`UserError`, which
        names an option by ``labels[name]`` where given (a Python keyword), else as its flag."""
        names = cls.option_names() if names is None else tuple(names)
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise UserError(f"{source}: unknown option(s) {', '.join(unknown)}; allowed for --method {cls.name}: "
                            f"{', '.join(names) or 'none'}")
        fields = {f.name: f for f in dataclasses.fields(cls.Options)}
        hints = field_types(cls.Options)
        values = {}
        for name in names:
            value = given.get(name)
            if value is None:
                value = cls.DEFAULTS.get(name, fields[name].default)
            meta = fields[name].metadata
            try:
                values[name] = value if value is None else coerce(
                    name, hints[name], value, meta.get("choices"), meta.get("check"),
                    label=(labels or {}).get(name))
            except UserError as exc:
                raise UserError(f"{source}: {exc}") from None
        return values

    @classmethod
    def from_options(cls, source: str, labels: dict | None = None, **given) -> "Method":
        """A method built from options alone (no run config), resolved as ``sparserl train``
        resolves them (:meth:`resolve_options`); ``source`` names the caller in errors
        (``SparseTrainingCallback``), ``labels`` its keywords. The SB3 callbacks build their
        methods this way."""
        return cls(options=cls.Options(**cls.resolve_options(given, source, labels=labels)))

    @classmethod
    def defaults(cls, data: dict) -> dict:
        """Values this method brings for options left unset in ``data`` (a config dict)."""
        return dict(cls.DEFAULTS)

    @classmethod
    def derived(cls, cfg) -> None:
        """Fill options whose default depends on the resolved config (in place)."""
        if cfg.nstep_delay is None:
            cfg.nstep_delay = 0

    @classmethod
    def validate(cls, cfg) -> None:
        """Raise :class:`UserError` for option combinations this method cannot run."""
        if cfg.dynamic_buffer and cfg.algo == "dqn":
            raise UserError("--dynamic-buffer needs a continuous-action algorithm (td3, sac), got --algo dqn")

    # -- building ---------------------------------------------------------------------
    def network_widths(self, cfg, obs_space, act_space) -> dict | None:
        """Hidden widths per MLP path when the method changes the architecture (tiny)."""
        return None

    def build(self, network: nn.Module, optimizer, targets: list[nn.Module], update_period: int,
              planned_updates: int, *, role: str, index: int = 0):
        """The plugin (masks, pruners) of one network, or ``None`` (dense attaches none).

        ``network`` is trained by ``optimizer``; ``targets`` are its target copies (kept
        consistent by the plugin); it is updated once every ``update_period`` of the
        ``planned_updates`` gradient updates of the run (TD3's actor: ``policy_delay``);
        ``role`` is its name (``actor``, ``critic``, ``q``: it picks e.g. the sparsity option)
        and ``index`` its position among the agent's networks (it seeds the mask generator)."""
        return None

    def attach(self, agent, total_updates: int) -> None:
        """Attach to ``agent`` the plugin :meth:`build` makes for each of its networks."""
        for index, (name, net) in enumerate(agent.networks.items()):
            plugin = self.build(net, agent.optimizers[name], agent.targets_of(name), agent.update_period(name),
                                total_updates, role=name, index=index)
            if plugin is not None:
                agent.plugins[name] = [plugin]

    # -- hooks of the training loop -----------------------------------------------------
    def on_start(self, run) -> None:
        """Called once the agent and replay buffer exist (fresh start and resume)."""
        cfg, opts = self.cfg, self.options
        if opts.dynamic_buffer:
            from ..buffers import DynamicCapacity
            buffer = run.buffer
            cap_max = min(cfg.buffer_size if opts.buffer_max is None else opts.buffer_max, buffer.max_size)
            self.dynamic = DynamicCapacity(buffer, min(opts.buffer_min, cap_max), cap_max, opts.buffer_threshold,
                                           opts.buffer_check_every, opts.policy_distance, opts.buffer_shrink)
            space = run.env.action_space
            self.action_scale = ((space.high - space.low) / 2.0).astype(np.float32)

    def nstep(self, gradient_steps: int) -> int:
        """The TD target length now: delayed multi-step (n = 1 for the first ``nstep_delay`` updates)."""
        return 1 if gradient_steps < self.options.nstep_delay else self.options.nstep

    def after_update(self, run) -> None:
        """After each round of gradient updates."""

    def after_env_step(self, run, step: int) -> dict | None:
        """After env step ``step`` (1-based count of steps taken); returns a log record or None."""
        if self.dynamic is not None and step >= self.cfg.learning_starts:
            record = self.dynamic.maybe_update(step, run.agent.policy_batch, self.action_scale)
            if record:
                self.buffer_log = record
                return {f"buffer/{k}": v for k, v in record.items()}
        return None

    def after_eval(self, run, mean_return: float, best_return: float) -> None:
        """After each evaluation (the prune guard of pruning methods lives here)."""

    # -- state, metrics, summary ---------------------------------------------------------
    def state_dict(self) -> dict:
        return {"dynamic": self.dynamic.state_dict() if self.dynamic else None,
                "buffer_log": dict(self.buffer_log)}

    def load_state_dict(self, state: dict) -> None:
        if self.dynamic is not None and state.get("dynamic"):
            self.dynamic.load_state_dict(state["dynamic"])
        self.buffer_log = dict(state.get("buffer_log", {}))

    def metrics(self, agent) -> dict:
        """Flat columns for ``metrics.csv`` (one row per evaluation): the last buffer check
        and each plugin's few columns (``sparsity_actor``, ``alive_critic.q1`` ...)."""
        out = dict(self.buffer_log)
        for name, plugins in agent.plugins.items():
            for plugin in plugins:
                out.update(plugin.metrics(name))
        return out

    def summary(self, agent, buffer) -> dict:
        """Blocks for ``summary.json``: ``buffer`` and each plugin's block
        (``method_state`` for masks, ``neurons`` for structured pruning)."""
        out: dict = {}
        if self.dynamic is not None:
            out["buffer"] = {"capacity_final": buffer.capacity, "size_final": buffer.size,
                             "policy_distance_last": self.dynamic.last_distance,
                             "threshold": self.dynamic.threshold}
        for name, plugins in agent.plugins.items():
            for plugin in plugins:
                plugin.add_summary(out, name)
        return out


Method.Options = combined("MethodOptions", Method.OPTION_BLOCKS)


# ---------------------------------------------------------------------------------------
def network_updates(planned_updates: int, update_period: int) -> int:
    """Gradient updates of a network updated once every ``update_period`` of ``planned_updates``."""
    return max(1, planned_updates // update_period)


def updates_of(agent, network: str, total_updates: int) -> int:
    """Planned gradient updates of one network out of ``total_updates`` critic updates: the
    agent says how often the network learns (:meth:`sparserl.algos.base.Agent.update_period`;
    TD3's and SAC's actor once every ``policy_delay``)."""
    return network_updates(total_updates, agent.update_period(network))


def guard_paused(guard: float | None, mean_return: float, best_return: float) -> bool:
    """Prune guard: pause while the return is more than ``guard`` x |best| below its best."""
    if guard is None or best_return == -math.inf:
        return False
    return mean_return < best_return - guard * abs(best_return)
