"""Dynamic threshold rule and pruning schedule (window and cubic ramp: ``sparse/schedules.py``).

Time ``t`` counts optimizer updates of the network being pruned (1 after the first update).

Schedule. ``prune_start``/``prune_end`` are either ``float`` fractions of ``total_updates`` in
[0, 1] or ``int`` update counts (``start = round(prune_start * total_updates)`` for floats).
A *prune event* happens at every ``t`` with ``start <= t <= end``, ``t >= 1`` and
``(t - start) % prune_every == 0``, and additionally at ``t == end``.
Progress ``p(t) = clip((t - start) / (end - start), 0, 1)`` (``1`` once ``t >= start`` if
``end == start``).

Rule (``rule="ramp"``, default). At an event, for each hidden layer with normalised importance
``I`` (mean over alive neurons = 1) the threshold is

    tau_t = ramp(t) * mean_{alive}(I),    ramp(t) = max_ratio * p(t)

and every alive neuron with ``I_j < tau_t`` is pruned. If ``target_fraction`` is given, the
number of removed neurons of a layer (counted from its original width ``n``) is additionally
capped at ``floor(s_t * n)`` with the cubic ramp of Zhu & Gupta (2017)
``s_t = target_fraction * (1 - (1 - p(t))^3)``; within the cap the least important go first.

``rule="cubic"``: no importance threshold; exactly the least important neurons are removed
until the cubic target ``floor(s_t * n)`` is met (gradual pruning on neuron importance;
requires ``target_fraction``).

``rule="threshold"``: the importance threshold alone decides *when* neurons go (and, with
``scope="global"``, *where*): at every event before the last, every alive neuron below
``tau_t`` is pruned, capped only by the final target ``floor(target_fraction * n)`` (not by the
cubic ramp). At the last event (``t == end``) whatever the threshold left of the budget is
removed least important first, so the run still ends at exactly the target and compares with
the other rules at equal size. Why: with ``ramp`` the cubic cap, not importance, sets the pace
(every layer loses the same ``floor(s_t * n)`` at each event); here a network whose neurons stop
mattering early loses them early, and one whose neurons all matter keeps them until the end.
Requires ``target_fraction``.

In both rules pruned neurons are never revived and a layer keeps at least ``min_width``
neurons (the most important ones): see :func:`neurons_to_prune`.

Scope (``scope="layer"``, default): the rule above runs on each hidden layer on its own, so
every layer ends with the same fraction ``target_fraction`` removed.

``scope="global"``: one rule for all hidden layers of the MLP together, so the network decides
*where* to keep its neurons. Each layer's importance is normalised to mean 1 over its alive
neurons (raw importances of different layers are not on one scale), the normalised values
are pooled, and

* the threshold is ``tau_t = ramp(t) * mean_{pooled alive}(I_norm)`` (``= ramp(t)``, since
  every layer's alive mean is 1), or ``inf`` for ``rule="cubic"``;
* the cap is the cubic ramp of the *total* original width ``N = sum_l n_l``: at most
  ``floor(s_t * N)`` neurons removed over all layers together;
* within the cap the least important pooled neurons go first (ties: lower layer, then lower
  index), but no layer drops below ``min_width`` (see :func:`neurons_to_prune_pooled`).

Without ``target_fraction`` and with ``rule="ramp"``, global and layer scopes prune the same
neurons (the normalised threshold is the same number in every layer); the scopes differ in
how the neuron budget is shared: per layer, every layer loses ``floor(s_t * n_l)``; globally,
a layer whose importance is concentrated in a few neurons gives up more, one whose neurons
all matter gives up fewer.

Recovery phase. Updates after ``end`` (the last prune event) train the final architecture
with no further pruning: with ``prune_end`` a fraction, the last ``1 - prune_end`` of the run.
Pruning damages the function; the recovery updates let the surviving neurons take over. During
recovery the group-sparse regulariser, which keeps shrinking every neuron group, can be
scaled by ``recovery_reg_scale`` (:meth:`PruneSchedule.reg_multiplier`; 0 turns it off, so
recovery is plain fine-tuning of the small network; 1, the default, keeps it as it was).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..sparse.schedules import PruneWindow, cubic_ramp
from .importance import normalize_importance

__all__ = ["THRESHOLD_RULES", "THRESHOLD_SCOPES", "neurons_to_prune", "neurons_to_prune_pooled",
           "PruneSchedule"]

THRESHOLD_RULES = ("ramp", "cubic", "threshold")
THRESHOLD_SCOPES = ("layer", "global")


def neurons_to_prune(importance: torch.Tensor, alive: torch.Tensor, threshold: float,
                     min_width: int, max_pruned: int | None = None) -> torch.Tensor:
    """Return the new alive mask after one threshold step.

    Alive neurons with ``importance < threshold`` are pruned, least important first, but
    at most ``max_pruned`` of them (if given) and never so many that fewer than
    ``min(min_width, alive.sum())`` stay alive. ``new_alive`` is always a subset of ``alive``.
    Ties are broken by index (lower index pruned first), so the result is deterministic.
    """
    if importance.shape != alive.shape:
        raise ValueError(f"importance shape {tuple(importance.shape)} differs from alive shape "
                         f"{tuple(alive.shape)}; allowed: equal 1-D shapes")
    if min_width < 1:
        raise ValueError(f"min_width={min_width}; allowed: >= 1")
    alive = alive.to(torch.bool)
    imp = importance.detach().float().to(alive.device)
    new_alive = alive.clone()
    n_alive = int(alive.sum())
    budget = n_alive - min(int(min_width), n_alive)
    if max_pruned is not None:
        budget = min(budget, max(0, int(max_pruned)))
    if budget <= 0:
        return new_alive
    candidates = torch.nonzero(alive & (imp < float(threshold)), as_tuple=False).flatten()
    if candidates.numel() == 0:
        return new_alive
    order = torch.argsort(imp[candidates], stable=True)
    new_alive[candidates[order[:budget]]] = False
    return new_alive


def neurons_to_prune_pooled(importances: Sequence[torch.Tensor], alives: Sequence[torch.Tensor],
                            threshold: float, min_width: int,
                            max_pruned: int | None = None) -> list[torch.Tensor]:
    """Like :func:`neurons_to_prune`, over several layers whose importances share one scale.

    Alive neurons of any layer with ``importance < threshold`` are pruned, least important
    first over all layers (ties: lower layer, then lower index), at most ``max_pruned`` in total
    (if given), while every layer keeps ``min(min_width, its alive count)`` neurons: a candidate
    of a layer already at that floor is skipped and the next one is taken. Returns one new
    alive mask per layer, each a subset of the old one.
    """
    if len(importances) != len(alives):
        raise ValueError(f"{len(importances)} importance vectors for {len(alives)} alive masks; "
                         "allowed: one per layer")
    if min_width < 1:
        raise ValueError(f"min_width={min_width}; allowed: >= 1")
    new_alives, values, layer_of, index_of, spare = [], [], [], [], []
    for layer, (imp, alive) in enumerate(zip(importances, alives)):
        if imp.shape != alive.shape or imp.dim() != 1:
            raise ValueError(f"layer {layer}: importance shape {tuple(imp.shape)} differs from alive "
                             f"shape {tuple(alive.shape)}; allowed: equal 1-D shapes")
        alive = alive.to(torch.bool)
        imp = imp.detach().float().cpu()
        new_alives.append(alive.clone())
        n_alive = int(alive.sum())
        spare.append(n_alive - min(int(min_width), n_alive))
        idx = torch.nonzero(alive.cpu() & (imp < float(threshold)), as_tuple=False).flatten()
        values.append(imp[idx])
        layer_of.append(torch.full_like(idx, layer))
        index_of.append(idx)
    budget = math.inf if max_pruned is None else max(0, int(max_pruned))
    if budget == 0 or not values:
        return new_alives
    values_all = torch.cat(values)
    order = torch.argsort(values_all, stable=True)  # concatenation order breaks ties by layer, index
    layers_all, indices_all = torch.cat(layer_of)[order].tolist(), torch.cat(index_of)[order].tolist()
    for layer, idx in zip(layers_all, indices_all):
        if budget <= 0:
            break
        if spare[layer] > 0:
            new_alives[layer][idx] = False
            spare[layer] -= 1
            budget -= 1
    return new_alives


def _resolve_time(value, total_updates, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r}; allowed: float fraction in [0, 1] or int update count")
    if isinstance(value, float):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value}; allowed: float fraction in [0, 1] or int update count")
        if total_updates is None:
            raise ValueError(f"{name}={value} is a fraction but total_updates=None; "
                             "allowed: give total_updates or an int update count")
        return int(round(value * total_updates))
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{name}={value}; allowed: int update count >= 0")
        return value
    raise ValueError(f"{name}={value!r}; allowed: float fraction in [0, 1] or int update count")


class PruneSchedule:
    """When to prune and which threshold / cap to use (see the module docstring)."""

    def __init__(self, total_updates: int | None = None, *, prune_start: float | int = 0.05,
                 prune_end: float | int = 0.5, prune_every: int = 1000, max_ratio: float = 1.0,
                 target_fraction: float | None = None, rule: str = "ramp", scope: str = "layer",
                 recovery_reg_scale: float = 1.0):
        if total_updates is not None and (isinstance(total_updates, bool) or int(total_updates) < 1):
            raise ValueError(f"total_updates={total_updates}; allowed: int >= 1 or None")
        if isinstance(prune_every, bool) or int(prune_every) < 1:
            raise ValueError(f"prune_every={prune_every}; allowed: int >= 1")
        if rule not in THRESHOLD_RULES:
            raise ValueError(f"rule={rule!r}; allowed: {', '.join(THRESHOLD_RULES)}")
        if scope not in THRESHOLD_SCOPES:
            raise ValueError(f"scope={scope!r}; allowed: {', '.join(THRESHOLD_SCOPES)}")
        if not float(recovery_reg_scale) >= 0:
            raise ValueError(f"recovery_reg_scale={recovery_reg_scale}; allowed: >= 0")
        if not float(max_ratio) > 0:
            raise ValueError(f"max_ratio={max_ratio}; allowed: > 0")
        if target_fraction is not None and not 0.0 < float(target_fraction) < 1.0:
            raise ValueError(f"target_fraction={target_fraction}; allowed: 0 < x < 1 or None")
        if rule in ("cubic", "threshold") and target_fraction is None:
            raise ValueError(f"rule={rule!r} needs target_fraction; allowed: 0 < target_fraction < 1")
        self.total_updates = None if total_updates is None else int(total_updates)
        start = _resolve_time(prune_start, self.total_updates, "prune_start")
        end = _resolve_time(prune_end, self.total_updates, "prune_end")
        if end < start:
            raise ValueError(f"prune_end={prune_end} (update {end}) is before prune_start="
                             f"{prune_start} (update {start}); allowed: prune_end >= prune_start")
        self.window = PruneWindow(start, end, int(prune_every))  # the events (shared with GMP)
        self.max_ratio = float(max_ratio)
        self.target_fraction = None if target_fraction is None else float(target_fraction)
        self.rule = rule
        self.scope = scope
        self.recovery_reg_scale = float(recovery_reg_scale)

    @property
    def start(self) -> int:
        return self.window.start

    @property
    def end(self) -> int:
        return self.window.end

    @property
    def every(self) -> int:
        return self.window.every

    def is_prune_step(self, t: int) -> bool:
        return self.window.is_due(t)

    def progress(self, t: int) -> float:
        return self.window.progress(t)

    def in_recovery(self, t: int) -> bool:
        """Whether update ``t`` comes after the last prune event (the recovery phase)."""
        return t > self.end

    def reg_multiplier(self, t: int) -> float:
        """Factor on the regulariser strength for update ``t``: ``recovery_reg_scale`` in the
        recovery phase, else 1."""
        return self.recovery_reg_scale if self.in_recovery(t) else 1.0

    def ramp(self, t: int) -> float:
        """Threshold multiple of the mean alive importance at time ``t`` (0 for rule='cubic')."""
        return self.max_ratio * self.progress(t) if self.rule != "cubic" else 0.0

    def target(self, t: int) -> float | None:
        """Cubic target fraction of removed neurons at time ``t`` (None without target_fraction)."""
        if self.target_fraction is None:
            return None
        return cubic_ramp(self.progress(t), self.target_fraction)

    def cap_fraction(self, t: int) -> float | None:
        """Fraction of the original width that may be removed by time ``t``: the cubic target,
        or for ``rule="threshold"`` the final target from the first event on."""
        return self.target_fraction if self.rule == "threshold" else self.target(t)

    def threshold_multiple(self, t: int) -> float:
        """Multiple of the mean alive (normalised) importance below which neurons go at ``t``:
        ``inf`` where the cap alone decides (``cubic``; ``threshold`` at its last event)."""
        if self.rule == "cubic" or (self.rule == "threshold" and t >= self.end):
            return math.inf
        return self.ramp(t)

    def layer_step(self, t: int, importance: torch.Tensor, alive: torch.Tensor,
                   original_width: int, min_width: int) -> torch.Tensor:
        """Apply the rule at time ``t`` to one layer; returns the new alive mask.

        ``importance``/``alive`` are over the same neurons; ``original_width`` is the layer's
        width before any pruning (for the cubic cap).
        """
        alive = alive.to(torch.bool)
        n_alive = int(alive.sum())
        cap = None
        s = self.cap_fraction(t)
        if s is not None:
            already = int(original_width) - n_alive
            cap = max(0, int(math.floor(s * original_width + 1e-9)) - already)
        multiple = self.threshold_multiple(t)
        if math.isinf(multiple):
            threshold = math.inf
        else:
            ref = importance[alive]
            mean = float(ref.mean()) if ref.numel() else 0.0
            threshold = multiple * mean
        return neurons_to_prune(importance, alive, threshold, min_width, max_pruned=cap)

    def step(self, t: int, importances: Sequence[torch.Tensor], alives: Sequence[torch.Tensor],
             original_widths: Sequence[int], min_width: int) -> list[torch.Tensor]:
        """Apply the rule at time ``t`` to all hidden layers of one MLP (per ``scope``).

        One entry per layer in each sequence (``importances``/``alives`` over the same
        neurons, ``original_widths`` before any pruning); returns the new alive masks.
        """
        if not len(importances) == len(alives) == len(original_widths):
            raise ValueError("importances, alives and original_widths differ in length; "
                             "allowed: one entry per hidden layer")
        if self.scope == "layer":
            return [self.layer_step(t, imp, alive, width, min_width)
                    for imp, alive, width in zip(importances, alives, original_widths)]
        alives = [a.to(torch.bool) for a in alives]
        normalised = [normalize_importance(imp.detach().float(), a) for imp, a in zip(importances, alives)]
        cap = None
        s = self.cap_fraction(t)
        if s is not None:
            total = sum(int(w) for w in original_widths)
            already = total - sum(int(a.sum()) for a in alives)
            cap = max(0, int(math.floor(s * total + 1e-9)) - already)
        multiple = self.threshold_multiple(t)
        if math.isinf(multiple):
            threshold = math.inf
        else:
            pooled = torch.cat([n[a.to(n.device)] for n, a in zip(normalised, alives)])
            threshold = multiple * (float(pooled.mean()) if pooled.numel() else 0.0)
        return neurons_to_prune_pooled(normalised, alives, threshold, min_width, max_pruned=cap)

    def state_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "every": self.every,
                "max_ratio": self.max_ratio, "target_fraction": self.target_fraction,
                "rule": self.rule, "scope": self.scope, "recovery_reg_scale": self.recovery_reg_scale,
                "total_updates": self.total_updates}
