"""Dynamic structured pruning (Su et al., 2024): ``structured`` and its no-regulariser
baseline ``neuron-magnitude``. Each MLP is pruned on its own, neurons are physically
removed at every prune event (target networks and Adam state follow)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UserError
from ..networks import MLP
from .base import Method, guard_paused, network_updates
from .options import PruneWindowOptions, StructuredOptions

if TYPE_CHECKING:
    from ..structured import StructuredPruner

#: ``--prune-networks`` value -> the agent networks it prunes (DQN's one network ``q`` is "all")
PRUNED_NETWORKS = {"actor": ("actor",), "critic": ("critic",), "all": None}

#: pruner diagnostic -> metrics.csv column prefix (the MLP path follows)
DIAGNOSTIC_COLUMNS = {"reg_grad_ratio": "reg_td_grad_ratio", "removed_norm_ratio": "prune_norm_ratio",
                      "output_change": "prune_output_change"}


class PrunerPlugin:
    """Dynamic structured pruning of the MLPs inside one network (each MLP on its own)."""

    def __init__(self, pruners: dict):
        self.pruners = pruners

    def penalty(self):
        return sum(p.penalty() for p in self.pruners.values())

    def before_optimizer_step(self) -> bool:
        return True

    def after_optimizer_step(self) -> bool:
        changed = False
        for p in self.pruners.values():
            changed = p.after_optimizer_step() or changed
        return changed

    def after_target_update(self) -> None:
        pass  # pruned neurons are removed from targets by the pruner's surgery (mirrors)

    def set_paused(self, paused: bool) -> None:
        for p in self.pruners.values():
            p.set_paused(paused)

    def extra_train_flops(self) -> float:
        return 0.0

    def summary(self) -> dict:
        return {path: p.summary() for path, p in self.pruners.items()}

    def add_summary(self, out: dict, name: str) -> None:
        out.setdefault("neurons", {}).update(self.summary())

    def metrics(self, name: str) -> dict:
        """``alive_<mlp>``, and the diagnostics of each MLP's last prune check (see
        :mod:`sparserl.structured.diagnostics`; blank before the first check):
        ``reg_td_grad_ratio_<mlp>`` (penalty / TD-loss gradient norm), ``prune_norm_ratio_<mlp>``
        (largest removed group norm / median alive group norm), ``prune_output_change_<mlp>``
        (largest change of the MLP's output on a fixed batch across the check)."""
        out = {f"alive_{path}": s["neurons_alive"] for path, s in self.summary().items()}
        for path, p in self.pruners.items():
            for key, column in DIAGNOSTIC_COLUMNS.items():
                if key in p.diagnostics:
                    out[f"{column}_{path}"] = p.diagnostics[key]
        return out

    def state_dict(self) -> dict:
        return {path: p.state_dict() for path, p in self.pruners.items()}

    def load_state_dict(self, state: dict) -> None:
        for path, s in state.items():
            self.pruners[path].load_state_dict(s)


class PruningMethod(Method):
    """Shared by the pruning methods (structured, neuron-magnitude, gmp): the prune window and the
    prune guard."""

    OPTION_BLOCKS = (PruneWindowOptions, *Method.OPTION_BLOCKS)

    def after_eval(self, run, mean_return: float, best_return: float) -> None:
        paused = guard_paused(self.options.prune_guard, mean_return, best_return)
        for plugins in run.agent.plugins.values():
            for plugin in plugins:
                plugin.set_paused(paused)


class Structured(PruningMethod):
    name = "structured"
    summary_line = "neuron-importance group-sparse regulariser + dynamic threshold + physical shrinking"
    magnitude_only = False
    #: the defaults are the fields' own (:class:`~.options.StructuredOptions`): ``TrainConfig``
    #: and the SB3 ``StructuredPruningCallback`` both take theirs from there
    OPTION_BLOCKS = (StructuredOptions, *PruningMethod.OPTION_BLOCKS)

    @classmethod
    def derived(cls, cfg) -> None:
        super().derived(cfg)
        if cfg.critic_target_neuron_fraction is None and cfg.target_neuron_fraction > 0:  # 0: validate names it
            # written to config.yaml resolved, so a re-run does not depend on this default
            cfg.critic_target_neuron_fraction = cfg.target_neuron_fraction

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        for option in ("target_neuron_fraction", "critic_target_neuron_fraction"):
            value = getattr(cfg, option)
            if value is not None and value <= 0:  # the threshold schedule needs a neuron budget
                raise UserError(f"--{option.replace('_', '-')} {value}: out of range; allowed: in (0, 1) for "
                                f"--method {cfg.method} (--prune-networks actor leaves the critics unpruned)")
        if cfg.algo == "dqn" and cfg.prune_networks != "all":
            raise UserError(f"--prune-networks {cfg.prune_networks} needs an actor-critic algorithm (td3, sac); "
                            f"allowed with --algo dqn: all (its one Q-network)")

    def prunes(self, network: str) -> bool:
        """Whether ``--prune-networks`` selects this agent network (DQN's ``q`` is in "all")."""
        chosen = PRUNED_NETWORKS[self.options.prune_networks]
        return chosen is None or network in chosen

    def target_fraction(self, network: str) -> float:
        """The neuron fraction removed by prune_end: critics have their own option."""
        if network == "critic" and self.options.critic_target_neuron_fraction is not None:
            return self.options.critic_target_neuron_fraction
        return self.options.target_neuron_fraction

    def make_pruner(self, chain, optimizer, updates: int, mirrors: list, target_fraction: float,
                    **pruner_options) -> "StructuredPruner":
        """The pruner of one MLP (or chain of Linear layers) under this method's options, over
        the ``updates`` gradient updates it gets (the native trainer's :meth:`build` and the SB3
        :class:`~sparserl.integrations.sb3.StructuredPruningCallback` both build through here).
        ``pruner_options``: the pruner's own knobs that are no run option (``shrink``, ``ema`` ...)."""
        from ..structured import StructuredPruner

        opts = self.options
        kwargs = dict(importance="magnitude" if self.magnitude_only else opts.importance,
                      regularizer="none" if self.magnitude_only else opts.regularizer, reg_lambda=opts.reg_lambda,
                      reg_mode=opts.reg_mode, prune_every=opts.prune_every, prune_start=opts.prune_start,
                      prune_end=opts.prune_end, min_width=opts.min_width, target_fraction=target_fraction,
                      rule=opts.threshold_rule, scope=opts.threshold_scope,
                      recovery_reg_scale=opts.recovery_reg_scale, shrink=True)
        return StructuredPruner(chain, optimizer, planned_updates=updates, mirrors=mirrors,
                                **{**kwargs, **pruner_options})

    def build(self, network, optimizer, targets, update_period, planned_updates, *, role, index=0):
        """One pruner per MLP inside ``network`` (TD3's critic holds two), each on its own;
        a target network's MLP at the same path follows every surgery."""
        if not self.prunes(role):
            return None
        updates = network_updates(planned_updates, update_period)
        pruners = {}
        for sub, mlp in network.named_modules():
            if not isinstance(mlp, MLP):
                continue
            mirrors = [t.get_submodule(sub) if sub else t for t in targets]
            pruners[f"{role}.{sub}" if sub else role] = self.make_pruner(
                mlp, optimizer, updates, mirrors, self.target_fraction(role))
        return PrunerPlugin(pruners)


class NeuronMagnitude(Structured):
    name = "neuron-magnitude"
    summary_line = "neuron pruning by weight-group norm, no regulariser (baseline)"
    magnitude_only = True
