"""Dynamic structured pruning (Su et al., 2024): ``structured`` and its no-regulariser
baseline ``neuron-magnitude``. Each MLP is pruned on its own, neurons are physically
removed at every prune event (target networks and Adam state follow)."""
from __future__ import annotations

from ..errors import UserError
from ..structured.importance import DEFAULT_IMPORTANCE
from .base import Method, guard_paused, updates_of

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


def _target_mlp(agent, path: str):
    name, _, sub = path.partition(".")
    if name not in agent.targets:
        return None
    target = agent.targets[name]
    return target.get_submodule(sub) if sub else target


class PruningMethod(Method):
    """Shared by the pruning methods (structured, neuron-magnitude, gmp): the prune window and the
    prune guard."""

    #: the prune window's defaults; ``TrainConfig``'s fields take theirs from here (one source).
    #: 0.05 / 0.5: the winner of the CartPole part of benchmarks/suites/struct_sweep.yaml (seeds
    #: 100-101): pruning done by mid-run leaves half the run to recover (the old 0.1 / 0.8 recovered less)
    DEFAULTS = {"prune_every": 1_000, "prune_start": 0.05, "prune_end": 0.5}

    def after_eval(self, run, mean_return: float, best_return: float) -> None:
        paused = guard_paused(self.cfg.prune_guard, mean_return, best_return)
        for plugins in run.agent.plugins.values():
            for plugin in plugins:
                plugin.set_paused(paused)


class Structured(PruningMethod):
    name = "structured"
    summary_line = "neuron-importance group-sparse regulariser + dynamic threshold + physical shrinking"
    magnitude_only = False
    #: ``--method structured``'s defaults: ``TrainConfig``'s fields and the SB3
    #: ``StructuredPruningCallback`` both take theirs from here, so the two cannot drift apart
    DEFAULTS = {**PruningMethod.DEFAULTS, "importance": DEFAULT_IMPORTANCE, "regularizer": "importance",
                "reg_lambda": 1e-4, "reg_mode": "loss", "min_width": 4, "target_neuron_fraction": 0.93,
                "threshold_rule": "ramp", "threshold_scope": "layer", "recovery_reg_scale": 1.0}

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

    def pruned_networks(self, agent) -> list[str]:
        """The agent networks ``--prune-networks`` selects (each MLP inside is pruned on its own)."""
        chosen = PRUNED_NETWORKS[self.cfg.prune_networks]
        return [name for name in agent.networks if chosen is None or name in chosen]

    def target_fraction(self, network: str) -> float:
        """The neuron fraction removed by prune_end: critics have their own option."""
        if network == "critic" and self.cfg.critic_target_neuron_fraction is not None:
            return self.cfg.critic_target_neuron_fraction
        return self.cfg.target_neuron_fraction

    def attach(self, agent, total_updates: int) -> None:
        from ..structured import StructuredPruner

        cfg = self.cfg
        for name in self.pruned_networks(agent):
            updates = updates_of(agent, name, total_updates)
            pruners = {}
            for path, mlp in agent.mlps().items():
                if path.split(".")[0] != name:
                    continue
                mirror = _target_mlp(agent, path)
                pruners[path] = StructuredPruner(
                    mlp, agent.optimizers[name], total_updates=updates,
                    importance="magnitude" if self.magnitude_only else cfg.importance,
                    regularizer="none" if self.magnitude_only else cfg.regularizer, reg_lambda=cfg.reg_lambda,
                    reg_mode=cfg.reg_mode,
                    prune_every=cfg.prune_every, prune_start=cfg.prune_start, prune_end=cfg.prune_end,
                    min_width=cfg.min_width, shrink=True, mirrors=[mirror] if mirror is not None else [],
                    target_fraction=self.target_fraction(name), rule=cfg.threshold_rule,
                    scope=cfg.threshold_scope, recovery_reg_scale=cfg.recovery_reg_scale)
            agent.plugins[name] = [PrunerPlugin(pruners)]


class NeuronMagnitude(Structured):
    name = "neuron-magnitude"
    summary_line = "neuron pruning by weight-group norm, no regulariser (baseline)"
    magnitude_only = True
