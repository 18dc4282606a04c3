"""``--method`` -> the parts that make it: sparse masks, topology updater, pruner, presets.

| method            | what is attached                                                      |
|-------------------|-----------------------------------------------------------------------|
| dense             | nothing                                                               |
| tiny              | nothing; hidden widths narrowed to the sparse weight count            |
| static            | ERK/uniform masks, fixed (SS in the RLx2 paper: mask_init random)     |
| set               | masks + drop smallest |w|, grow random                                |
| rigl              | masks + drop smallest |w|, grow largest |dense gradient|              |
| rlx2              | rigl + delayed 3-step target + dynamic-capacity buffer                |
| structured        | neuron-importance regulariser + dynamic threshold + physical shrink   |
| neuron-magnitude  | neuron pruning by weight-group norm, no regulariser                   |
| gmp               | gradual magnitude pruning of weights (cubic schedule)                 |

Sparsity schedules count gradient updates of the network they act on.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UserError
from .sparse import SparseTraining, apply_masks, gmp_sparsity, layer_nonzero_counts, mask_gradients, sync_masks
from .sparse.flops import dense_gradient_extra_flops, forward_flops

SPARSE_METHODS = ("static", "set", "rigl", "rlx2")
PRUNING_METHODS = ("structured", "neuron-magnitude")
PRESET_DIR = Path(__file__).parent / "presets"

# Defaults a method brings, applied only to keys the user left unset.
METHOD_DEFAULTS = {
    "rlx2": {"nstep": 3, "dynamic_buffer": True},
    "static": {"mask_init": "random"},  # the paper's SS baseline: a fixed random ERK mask
}


def apply_method_defaults(data: dict) -> dict:
    out = dict(data)
    for key, value in METHOD_DEFAULTS.get(out.get("method", "dense"), {}).items():
        out.setdefault(key, value)
    return out


def load_preset(name: str, algo: str, env: str) -> dict:
    """Per-env settings from ``presets/<name>.yaml`` (keys: ``common``, ``<algo>/<env-family>``)."""
    import yaml

    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        allowed = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise UserError(f"unknown --preset {name!r}; allowed: {', '.join(allowed)}")
    table = yaml.safe_load(path.read_text())
    family = env.split("-v")[0]
    key = f"{algo}/{family}"
    if key not in table.get("envs", {}):
        known = ", ".join(sorted(table.get("envs", {})))
        raise UserError(f"--preset {name} has no settings for {algo} on {env}; known: {known}")
    return {**table.get("common", {}), **table["envs"][key]}


def sparsity_of(cfg, network: str) -> float:
    return {"actor": cfg.actor_sparsity, "critic": cfg.critic_sparsity, "q": cfg.q_sparsity}[network]


def tiny_widths(cfg, obs_space, act_space) -> dict[str, list[int]]:
    """The paper's 'Tiny' baseline: one hidden width per MLP such that the dense weight count
    matches the sparse network's ((1 - sparsity) x dense weights), rounded to the nearest width."""
    from .algos import AGENTS

    probe = AGENTS[cfg.algo](cfg, obs_space, act_space)
    widths = {}
    for path, mlp in probe.mlps().items():
        layers = mlp.linear_layers()
        n_in, n_out, depth = layers[0].in_features, layers[-1].out_features, len(layers) - 1
        target = (1.0 - sparsity_of(cfg, path.split(".")[0])) * sum(l.weight.numel() for l in layers)

        def weights(h: int) -> int:
            return n_in * h + (depth - 1) * h * h + h * n_out

        best = min(range(1, max(cfg.hidden) + 1), key=lambda h: abs(weights(h) - target))
        widths[path] = [best] * depth
    return widths


# ---------------------------------------------------------------------------------------
class SparsePlugin:
    """Unstructured masks (+ topology updates) on one network, through the agent's seam."""

    def __init__(self, sparse: SparseTraining, targets: list[nn.Module], batch_size: int):
        self.sparse, self.targets, self.batch_size = sparse, targets, batch_size
        dense, sparse_f = forward_flops(sparse.module)
        # A topology update needs the dense weight gradient on the minibatches it uses.
        self.extra_per_update = dense_gradient_extra_flops(dense, sparse_f, batch_size * sparse.grad_accumulation)
        self.after_target_update()

    def penalty(self):
        return 0.0

    def before_optimizer_step(self) -> bool:
        return self.sparse.before_optimizer_step()

    def after_optimizer_step(self) -> bool:
        self.sparse.after_optimizer_step()
        return False  # drop count == grow count: FLOPs do not change

    def after_target_update(self) -> None:
        self.sparse.sync(*self.targets)

    def extra_train_flops(self) -> float:
        return 0.0 if self.sparse.is_static else float(self.extra_per_update * self.sparse.n_topology_updates)

    def summary(self) -> dict:
        return {"sparsity": self.sparse.sparsity(), "topology_updates": self.sparse.n_topology_updates,
                "layer_sparsity": self.sparse.layer_sparsities()}

    def state_dict(self) -> dict:
        return self.sparse.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sparse.load_state_dict(state)
        self.after_target_update()


class GMPPlugin:
    """Gradual magnitude pruning (Zhu & Gupta 2017): every ``prune_every`` updates between
    ``start`` and ``end``, each layer keeps its largest-|w| weights so that the global
    sparsity follows the cubic ramp s_t = s_f (1 - (1 - p)^3); pruned weights stay zero."""

    def __init__(self, module: nn.Module, targets: list[nn.Module], final_sparsity: float, allocation: str,
                 start: int, end: int, every: int):
        self.module, self.targets = module, targets
        self.final, self.allocation, self.start, self.end, self.every = final_sparsity, allocation, start, end, every
        self.weights = {f"{n}.weight": m.weight for n, m in module.named_modules() if isinstance(m, nn.Linear)}
        self.masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in self.weights.items()}
        self.step = 0
        self.current = 0.0

    def penalty(self):
        return 0.0

    def before_optimizer_step(self) -> bool:
        mask_gradients(self.module, self.masks)
        return True

    @torch.no_grad()
    def after_optimizer_step(self) -> bool:
        self.step += 1
        changed = False
        on_grid = (self.step - self.start) % self.every == 0 or self.step == self.end  # end: reach s_f
        if self.start <= self.step <= self.end and on_grid:
            target = gmp_sparsity(self.step, self.start, self.end, self.final)
            if target > self.current:
                shapes = {n: tuple(w.shape) for n, w in self.weights.items()}
                counts = layer_nonzero_counts(shapes, target, self.allocation)
                for n, w in self.weights.items():
                    score = w.abs().masked_fill(~self.masks[n], -1.0).flatten()
                    keep = torch.zeros_like(score, dtype=torch.bool)
                    keep[torch.topk(score, counts[n]).indices] = True
                    self.masks[n] = keep.view_as(w) & self.masks[n]
                self.current, changed = target, True
        apply_masks(self.module, self.masks)
        if changed:
            self.after_target_update()
        return changed

    def after_target_update(self) -> None:
        for t in self.targets:
            sync_masks(t, self.masks)

    def extra_train_flops(self) -> float:
        return 0.0

    def summary(self) -> dict:
        total = sum(m.numel() for m in self.masks.values())
        return {"sparsity": 1.0 - sum(int(m.sum()) for m in self.masks.values()) / total, "gmp_target": self.current}

    def state_dict(self) -> dict:
        return {"masks": {n: m.clone() for n, m in self.masks.items()}, "step": self.step, "current": self.current}

    def load_state_dict(self, state: dict) -> None:
        self.masks = {n: m.clone() for n, m in state["masks"].items()}
        self.step, self.current = int(state["step"]), float(state["current"])
        apply_masks(self.module, self.masks)


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

    def state_dict(self) -> dict:
        return {path: p.state_dict() for path, p in self.pruners.items()}

    def load_state_dict(self, state: dict) -> None:
        for path, s in state.items():
            self.pruners[path].load_state_dict(s)


def _updates_of(agent, network: str, total_updates: int) -> int:
    """Planned gradient updates of one network (TD3's actor learns every policy_delay steps)."""
    if network == "actor":
        return max(1, total_updates // agent.cfg.policy_delay)
    return total_updates


def _target_mlp(agent, path: str):
    name, _, sub = path.partition(".")
    if name not in agent.targets:
        return None
    target = agent.targets[name]
    return target.get_submodule(sub) if sub else target


def attach_method(agent, cfg, total_updates: int) -> None:
    """Attach the method's plugins to the agent's networks (no-op for dense and tiny)."""
    method = cfg.method
    if method in ("dense", "tiny"):
        return
    for name, net in agent.networks.items():
        updates = _updates_of(agent, name, total_updates)
        targets = [agent.targets[name]] if name in agent.targets else []
        if method in SPARSE_METHODS:
            grow = cfg.grow or ("random" if method == "set" else "gradient")
            updater = "static" if method == "static" else ("rigl" if grow == "gradient" else "set")
            stop = None if cfg.topology_stop is None else max(1, int(cfg.topology_stop * updates))
            try:
                sparse = SparseTraining(
                    net, agent.optimizers[name], sparsity_of(cfg, name), allocation=cfg.allocation,
                    init=cfg.mask_init, updater=updater, delta=cfg.topology_delta,
                    drop_fraction=cfg.drop_fraction, t_end=updates, stop_step=stop,
                    reset_optimizer_state=cfg.reset_adam, skip_step_on_update=cfg.skip_step_on_update,
                    grad_accumulation=min(cfg.grad_accumulation, cfg.topology_delta),
                    backend=cfg.sparse_backend,
                    generator=torch.Generator().manual_seed(cfg.seed * 1000 + len(agent.plugins)))
            except ValueError as exc:
                raise UserError(f"--{name}-sparsity {sparsity_of(cfg, name)}: {exc}") from None
            for t in targets:  # targets start as exact copies of the masked online network
                t.load_state_dict(net.state_dict())
            agent.plugins[name] = [SparsePlugin(sparse, targets, cfg.batch_size)]
        elif method == "gmp":
            agent.plugins[name] = [GMPPlugin(net, targets, cfg.gmp_sparsity, cfg.allocation,
                                             int(cfg.prune_start * updates), max(1, int(cfg.prune_end * updates)),
                                             cfg.prune_every)]
        elif method in PRUNING_METHODS:
            from .structured import StructuredPruner
            pruners = {}
            for path, mlp in agent.mlps().items():
                if path.split(".")[0] != name:
                    continue
                mirror = _target_mlp(agent, path)
                magnitude = method == "neuron-magnitude"
                pruners[path] = StructuredPruner(
                    mlp, agent.optimizers[name], total_updates=updates,
                    importance="magnitude" if magnitude else cfg.importance,
                    regularizer="none" if magnitude else cfg.regularizer, reg_lambda=cfg.reg_lambda,
                    prune_every=cfg.prune_every, prune_start=cfg.prune_start, prune_end=cfg.prune_end,
                    min_width=cfg.min_width, shrink=True, mirrors=[mirror] if mirror is not None else [],
                    target_fraction=cfg.target_neuron_fraction)
            agent.plugins[name] = [PrunerPlugin(pruners)]
        else:  # pragma: no cover - config.resolve rejects unknown methods
            raise UserError(f"unknown --method {method!r}")


def method_summary(agent, compact: bool = False) -> dict:
    """Method-specific fields: full blocks for summary.json, or a few flat metrics.csv columns."""
    out: dict = {}
    for name, plugins in agent.plugins.items():
        for plugin in plugins:
            s = plugin.summary()
            if isinstance(plugin, PrunerPlugin):
                if compact:
                    for path, ps in s.items():
                        out[f"alive_{path}"] = ps["neurons_alive"]
                else:
                    out.setdefault("neurons", {}).update(s)
            elif compact:
                out[f"sparsity_{name}"] = round(s["sparsity"], 4)
            else:
                out.setdefault("method_state", {})[name] = s
    return out
