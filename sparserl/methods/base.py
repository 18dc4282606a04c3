"""What a training *method* is: one object that owns everything about it.

A method (dense, tiny, static, set, rigl, rlx2, structured, neuron-magnitude, gmp) is a
subclass of :class:`Method`, registered once in :mod:`sparserl.methods`. It owns

* its **defaults** (``DEFAULTS``: applied by :func:`sparserl.config.resolve` to options the
  user left unset, so the CLI and the Python API resolve to the same config),
* its **validation** (:meth:`validate`),
* how it **wraps the agent's networks and optimizers** (:meth:`network_widths`,
  :meth:`attach`: per-network plugins driven by ``Agent.optimize`` / ``Agent.update_target``),
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

import math
from typing import Any, ClassVar

import numpy as np

from ..errors import UserError


class Method:
    """Base class; the plain algorithm (``dense``) is this class with nothing attached."""

    name: ClassVar[str] = "dense"
    summary_line: ClassVar[str] = "the plain algorithm"
    #: option -> value, applied to options the user left unset (``None``)
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg):
        self.cfg = cfg
        self.dynamic = None          # buffers.DynamicCapacity when --dynamic-buffer
        self.buffer_log: dict = {}   # the last dynamic-buffer check
        self.action_scale = None

    # -- configuration ----------------------------------------------------------------
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

    def attach(self, agent, total_updates: int) -> None:
        """Attach per-network plugins (masks, pruners) to ``agent``; dense attaches none."""

    # -- hooks of the training loop -----------------------------------------------------
    def on_start(self, run) -> None:
        """Called once the agent and replay buffer exist (fresh start and resume)."""
        cfg = self.cfg
        if cfg.dynamic_buffer:
            from ..buffers import DynamicCapacity
            buffer = run.buffer
            cap_max = min(cfg.buffer_size if cfg.buffer_max is None else cfg.buffer_max, buffer.max_size)
            self.dynamic = DynamicCapacity(buffer, min(cfg.buffer_min, cap_max), cap_max, cfg.buffer_threshold,
                                           cfg.buffer_check_every, cfg.policy_distance, cfg.buffer_shrink)
            space = run.env.action_space
            self.action_scale = ((space.high - space.low) / 2.0).astype(np.float32)

    def nstep(self, gradient_steps: int) -> int:
        """The TD target length now: delayed multi-step (n = 1 for the first ``nstep_delay`` updates)."""
        return 1 if gradient_steps < self.cfg.nstep_delay else self.cfg.nstep

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


# ---------------------------------------------------------------------------------------
def updates_of(agent, network: str, total_updates: int) -> int:
    """Planned gradient updates of one network out of ``total_updates`` critic updates: the
    agent says how often the network learns (:meth:`sparserl.algos.base.Agent.update_period`;
    TD3's and SAC's actor once every ``policy_delay``)."""
    return max(1, total_updates // agent.update_period(network))


def guard_paused(guard: float | None, mean_return: float, best_return: float) -> bool:
    """Prune guard: pause while the return is more than ``guard`` x |best| below its best."""
    if guard is None or best_return == -math.inf:
        return False
    return mean_return < best_return - guard * abs(best_return)
