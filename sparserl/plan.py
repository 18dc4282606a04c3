"""Warnings about a run whose schedules cannot do what its options ask.

A config can be valid and still plan too little: the structured defaults (a prune event every
1,000 updates between 5 % and 50 % of the run) give a 5k-step DQN run a single prune event, which
removes only the neurons below the mean importance (about half) against a 93 % target; a
``--topology-delta`` larger than the run leaves a RigL mask static. Nothing is wrong with the
input, so these are warnings, not errors, computed from the resolved config before the run
starts (the same schedules the pruner and the topology updater use).
"""
from __future__ import annotations

from .algos import AGENTS
from .config import TrainConfig, planned_updates
from .methods.base import network_updates

#: fewer prune events than this with the ramp rule cannot remove the target fraction: each event
#: removes only neurons below ``p(t)`` times the mean importance, so the cap is reached step by step
MIN_RAMP_EVENTS = 5
#: fewer topology updates than this hardly evolves a sparse mask
MIN_TOPOLOGY_UPDATES = 3

_PRUNING = ("structured", "neuron-magnitude")
_TOPOLOGY = ("set", "rigl", "rlx2")


def _network_updates(cfg: TrainConfig) -> dict[str, int]:
    """Planned gradient updates per network, from the algorithm's update periods (TD3's and
    SAC's actor learns once every ``policy_delay`` critic updates); the same count as
    :func:`sparserl.methods.base.updates_of` gives the built agent's schedules."""
    total = planned_updates(cfg)
    periods = AGENTS[cfg.algo].network_update_periods(cfg)
    return {name: network_updates(total, period) for name, period in periods.items()}


def prune_events(total: int, start_fraction: float, end_fraction: float, every: int) -> int:
    """Prune events with progress above 0 (the ones that can remove neurons) of the schedule in
    :class:`sparserl.structured.threshold.PruneSchedule`: ``t`` in ``(start, end]`` with
    ``(t - start) % every == 0``, plus ``t == end``."""
    start, end = int(round(start_fraction * total)), int(round(end_fraction * total))
    if end <= start:
        return 1 if end >= 1 else 0
    first = max(start + every, 1)
    regular = 0 if first > end else (end - first) // every + 1
    return regular + (1 if (end - start) % every else 0)


def topology_updates(total: int, delta: int, stop_fraction: float | None) -> int:
    """Topology updates of :class:`sparserl.sparse.schedules.TopologySchedule`: multiples of
    ``delta`` below ``t_end`` (the network's planned updates) and below the stop step."""
    limit = total if stop_fraction is None else min(total, max(1, int(stop_fraction * total)))
    return max(0, (limit - 1) // delta)


def plan_warnings(cfg: TrainConfig) -> list[str]:
    """One line per network whose pruning or topology schedule is too short for the run."""
    out = []
    if cfg.method in _PRUNING:
        pruned = {"all": None, "actor": ("actor",), "critic": ("critic",)}[cfg.prune_networks]
        for name, updates in _network_updates(cfg).items():
            if pruned is not None and name not in pruned:
                continue
            events = prune_events(updates, cfg.prune_start, cfg.prune_end, cfg.prune_every)
            needed = 1 if cfg.threshold_rule == "cubic" else MIN_RAMP_EVENTS
            if events >= needed:
                continue
            target = (cfg.critic_target_neuron_fraction if name == "critic" and cfg.critic_target_neuron_fraction
                      else cfg.target_neuron_fraction)
            window = int(round(cfg.prune_end * updates)) - int(round(cfg.prune_start * updates))
            suggest = max(1, window // (2 * MIN_RAMP_EVENTS))
            out.append(f"--method {cfg.method} plans {events} prune event{'s' * (events != 1)} for the {name} network "
                       f"({updates} updates, one every --prune-every {cfg.prune_every} between --prune-start "
                       f"{cfg.prune_start} and --prune-end {cfg.prune_end}); removing {target:.0%} of its neurons "
                       f"takes at least {needed}: give --prune-every {suggest} or a longer --steps")
    if cfg.method in _TOPOLOGY:
        for name, updates in _network_updates(cfg).items():
            count = topology_updates(updates, cfg.topology_delta, cfg.topology_stop)
            if count >= MIN_TOPOLOGY_UPDATES:
                continue
            suggest = max(1, updates // (2 * MIN_TOPOLOGY_UPDATES + 2))
            out.append(f"--method {cfg.method} plans {count} topology update{'s' * (count != 1)} for the {name} network "
                       f"({updates} updates, one every --topology-delta {cfg.topology_delta}); "
                       f"{'its mask stays static' if count == 0 else 'its mask hardly evolves'}: give "
                       f"--topology-delta {suggest} or a longer --steps")
    return out
