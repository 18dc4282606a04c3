"""Training speed of sparse agents: gradient updates/s by method, sparsity, width and backend.

    nice -n 10 .venv/bin/python benchmarks/train_speed.py --updates 200 --results-md docs/RESULTS.md

One process, one torch thread, the same synthetic replay data (Hopper-v5 shapes: obs 11,
action 3, batch 256) for every agent.  Per algorithm (TD3, SAC): dense 256-wide is the
baseline; then per sparsity level (actor/critic) and width: ``tiny`` (dense, same weight
count) and static / RigL / RLx2 under each execution backend (``masked`` dense-times-mask,
``csr`` sparse kernels, ``auto`` per-layer choice measured on this machine).  Each row times
``--updates`` agent updates on a filled buffer after ``--warmup`` updates; rows alternate
within each of ``--repeats`` rounds so machine noise hits them alike, the median is reported.
Topology updates run every ``--topology-delta`` updates so their cost (dense gradient on
that step, structure rebuild) is included.  ``--profile`` adds a torch.profiler table of
RLx2 TD3 updates (csr, the first sparsity level).  SBX TD3 (JAX) is timed against our dense
TD3 through each one's ``learn()`` on one pinned core (benchmarks/sbx_compare.py) when a python
with ``sbx`` is given (``--sbx-python``) or this one has it.  Batches are sampled as the agent
samples them in training (``mid_obs`` only for SAC).  ``--results-md PATH`` replaces the "Training speed (sparse
kernels)" section of that file.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

OBS_DIM, ACT_DIM = 11, 3   # Hopper-v5
SECTION = "train-speed"
TITLE = "Training speed (sparse kernels)"


@dataclass(frozen=True)
class Row:
    algo: str
    method: str
    width: int
    actor_sparsity: float = 0.0
    critic_sparsity: float = 0.0
    backend: str = "masked"

    @property
    def label(self) -> str:
        sp = "-" if self.method == "dense" else f"{self.actor_sparsity:g}/{self.critic_sparsity:g}"
        return f"{self.algo} {self.method:6s} w{self.width:<4d} {sp:9s} {self.backend}"


def spaces():
    """Hopper-v5 shaped spaces (gymnasium's Box when installed, else a stand-in with the same
    attributes: the agents only read shape / low / high)."""
    low, high = -np.ones(ACT_DIM, np.float32), np.ones(ACT_DIM, np.float32)
    try:
        from gymnasium.spaces import Box
        return Box(-np.inf, np.inf, (OBS_DIM,), np.float32), Box(low, high, (ACT_DIM,), np.float32)
    except ImportError:
        return (SimpleNamespace(shape=(OBS_DIM,), low=-np.inf, high=np.inf),
                SimpleNamespace(shape=(ACT_DIM,), low=low, high=high))


def filled_buffer(size: int = 20_000):
    from sparserl.buffers import ReplayBuffer

    rng = np.random.default_rng(0)
    buffer = ReplayBuffer((OBS_DIM,), (ACT_DIM,), np.float32, size, seed=0, store_behaviour=True)
    for i in range(size):
        buffer.add(rng.normal(size=OBS_DIM), rng.uniform(-1, 1, ACT_DIM), rng.normal(), rng.normal(size=OBS_DIM),
                   False, i % 1000 == 999)
    return buffer


def build(row: Row, args):
    from sparserl.algos import make_agent
    from sparserl.config import TrainConfig, planned_updates, resolve
    from sparserl.methods import attach_method

    data = (dict(
        algo=row.algo, env="Hopper-v5", method=row.method, steps=100 * (args.updates + args.warmup), learning_starts=0,
        hidden=[row.width, row.width], actor_sparsity=row.actor_sparsity or 0.9,
        critic_sparsity=row.critic_sparsity or 0.9, topology_delta=args.topology_delta, sparse_backend=row.backend,
        out=tempfile.gettempdir(), seed=0))
    cfg = resolve(TrainConfig(**data))
    torch.manual_seed(0)
    obs_space, act_space = spaces()
    agent = make_agent(cfg, obs_space, act_space)
    attach_method(agent, cfg, planned_updates(cfg))
    return cfg, agent


def nonzero_weights(agent) -> int:
    """Non-zero Linear weights over the agent's trained networks (actor + critic)."""
    from sparserl.sparse.flops import count_parameters

    return sum(count_parameters(net)["nonzero"] for net in agent.networks.values())


def compressed_layers(agent) -> str:
    """``csr layers / managed layers`` over the agent's sparse plugins ('-' when none)."""
    counts = [p.sparse.layer_backends() for ps in agent.plugins.values() for p in ps if hasattr(p, "sparse")]
    if not counts:
        return "-"
    backends = [b for c in counts for b in c.values()]
    return f"{backends.count('csr')}/{len(backends)}"


def time_row(row: Row, args, buffer) -> tuple[float, float, str, int]:
    """(updates per wall-clock second, updates per CPU second of this process, csr layers,
    non-zero weights)."""
    cfg, agent = build(row, args)
    n = args.updates_wide if row.width > 256 else args.updates
    for _ in range(args.warmup):
        agent.update(buffer.sample(cfg.batch_size, cfg.nstep, agent.uses_mid_obs))
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        agent.update(buffer.sample(cfg.batch_size, cfg.nstep, agent.uses_mid_obs))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, n / cpu, compressed_layers(agent), nonzero_weights(agent)


def parse_level(text: str) -> tuple[int, float, float]:
    """``"0.95"``, ``"0.98/0.95"`` (actor/critic) or ``"1024:0.98"`` (width prefix)."""
    width, _, rest = text.rpartition(":")
    actor, _, critic = rest.partition("/")
    return int(width or 256), float(actor), float(critic or actor)


def rows_for(args) -> list[Row]:
    rows = []
    for algo in args.algos:
        rows.append(Row(algo, "dense", 256))
        for width, actor, critic in map(parse_level, args.levels):
            if width != 256 and args.dense_wide:
                rows.append(Row(algo, "dense", width))
            rows.append(Row(algo, "tiny", width, actor, critic))
            for method in args.methods:
                for backend in args.backends:
                    rows.append(Row(algo, method, width, actor, critic, backend))
    return list(dict.fromkeys(rows))


def sbx_line(args) -> str:
    """SBX (JAX) TD3 beside ours, each through its own ``learn()`` on one pinned core
    (benchmarks/sbx_compare.py: timing SBX's ``train(gradient_steps=N)`` with a new ``N`` would
    time a recompilation). Skipped where no python with ``sbx`` is given or importable."""
    import subprocess

    import sbx_compare

    python = args.sbx_python or sys.executable
    probe = subprocess.run([python, "-c", "import sbx"], capture_output=True)
    if probe.returncode != 0:
        return "SBX TD3: not measured (no python with `sbx` installed; give one with --sbx-python)."
    compare_args = argparse.Namespace(sbx_python=python, core=args.sbx_core, warmup=1_000, skip=300,
                                      steps=args.sbx_steps, seed=0, repeats=args.sbx_repeats)
    return sbx_compare.summary_line(sbx_compare.compare(compare_args), compare_args)


def profile_update(args, buffer) -> list[str]:
    """torch.profiler table (top ops by self CPU time) over TD3 updates of ``--profile-method``."""
    from torch.profiler import ProfilerActivity, profile

    width, actor, critic = parse_level(args.levels[0])
    row = (Row("td3", "dense", 256) if args.profile_method == "dense"
           else Row("td3", args.profile_method, width, actor, critic, "csr"))
    cfg, agent = build(row, args)
    for _ in range(args.warmup):
        agent.update(buffer.sample(cfg.batch_size, cfg.nstep, agent.uses_mid_obs))
    n = 50
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            agent.update(buffer.sample(cfg.batch_size, cfg.nstep, agent.uses_mid_obs))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    what = ("dense width 256" if row.method == "dense"
            else f"{row.method} {actor:g}/{critic:g} width {width}, csr backend")
    lines = [f"Profile: TD3 {what}; {n} updates under "
             f"torch.profiler (self CPU time per update; the profiler itself adds overhead per op):", "",
             "| op | calls/update | self ms/update | share |", "|---|---|---|---|"]
    for e in events[:args.profile_rows]:
        lines.append(f"| `{e.key}` | {e.count / n:.1f} | {e.self_cpu_time_total / 1000 / n:.3f} | "
                     f"{e.self_cpu_time_total / total:.1%} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["td3", "sac"], choices=["td3", "sac"])
    parser.add_argument("--levels", nargs="+", default=["0.98/0.95", "0.9", "0.95", "0.98", "1024:0.98"],
                        help="sparsity levels: S, ACTOR/CRITIC, or WIDTH:S (default width 256)")
    parser.add_argument("--methods", nargs="+", default=["static", "rigl", "rlx2"])
    parser.add_argument("--backends", nargs="+", default=["masked", "csr", "auto"])
    parser.add_argument("--updates", type=int, default=200, help="timed updates per row (256-wide)")
    parser.add_argument("--updates-wide", type=int, default=40, help="timed updates per row (wider)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--topology-delta", type=int, default=100)
    parser.add_argument("--no-dense-wide", dest="dense_wide", action="store_false",
                        help="skip the dense rows at widths other than 256")
    parser.add_argument("--profile", action="store_true", help="add a torch.profiler table of one update")
    parser.add_argument("--profile-rows", type=int, default=15)
    parser.add_argument("--profile-method", default="rlx2", choices=["dense", "static", "rigl", "rlx2"],
                        help="TD3 method the profile table shows (sparse ones at the first level, csr)")
    parser.add_argument("--sbx-python", default=None,
                        help="python of an environment with sbx-rl, for the SBX line (default: this one)")
    parser.add_argument("--sbx-core", type=int, default=0, help="the core the SBX comparison is pinned to")
    parser.add_argument("--sbx-steps", type=int, default=2_000, help="timed env steps per SBX-comparison run")
    parser.add_argument("--sbx-repeats", type=int, default=3)
    parser.add_argument("--results-md", default=None)
    parser.add_argument("--note", default="", help="extra words for the RESULTS.md header (e.g. the machine load)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    buffer = filled_buffer()
    rows = rows_for(args)
    rates: dict[Row, list[float]] = {r: [] for r in rows}
    cpu_rates: dict[Row, list[float]] = {r: [] for r in rows}
    layers: dict[Row, str] = {}
    weights: dict[Row, int] = {}
    for _ in range(args.repeats):
        for row in rows:
            wall, cpu, layers[row], weights[row] = time_row(row, args, buffer)
            rates[row].append(wall)
            cpu_rates[row].append(cpu)
            print(f"{row.label:45s} {wall:8.1f} upd/s wall {cpu:8.1f} upd/s CPU  csr layers {layers[row]}", flush=True)
    median = {r: statistics.median(v) for r, v in rates.items()}
    cpu_median = {r: statistics.median(v) for r, v in cpu_rates.items()}

    lines = ["| algo | width | sparsity a/c | weights | method | backend | csr layers | upd/s (CPU) | vs dense "
             "| vs masked | upd/s (wall) | vs dense (wall) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        dense_row = Row(row.algo, "dense", 256)
        masked_row = Row(row.algo, row.method, row.width, row.actor_sparsity, row.critic_sparsity, "masked")
        sp = "-" if row.method == "dense" else f"{row.actor_sparsity:g}/{row.critic_sparsity:g}"
        backend = row.backend if row.method not in ("dense", "tiny") else "-"
        vs_masked = (f"{cpu_median[row] / cpu_median[masked_row]:.2f}x"
                     if masked_row in cpu_median and row.backend != "masked" else "")
        lines.append(f"| {row.algo} | {row.width} | {sp} | {weights[row]:,} | {row.method} | {backend} | {layers[row]} | "
                     f"{cpu_median[row]:.1f} | {cpu_median[row] / cpu_median[dense_row]:.2f}x | {vs_masked} | "
                     f"{median[row]:.1f} | {median[row] / median[dense_row]:.2f}x |")
    print("\n".join(lines))
    sbx = sbx_line(args)
    print(sbx)
    profile_lines = profile_update(args, buffer) if args.profile else []
    if profile_lines:
        print("\n".join(profile_lines))
    if args.results_md:
        from sparserl.bench.results_md import benchmark_header, upsert_section
        body = [
            *benchmark_header(TITLE, sys.argv, (
                f"; Hopper-v5 shapes (obs {OBS_DIM}, act {ACT_DIM}), batch 256, ERK allocation, topology update "
                f"every {args.topology_delta} updates; median of {args.repeats} alternating repeats of "
                f"{args.updates} updates (width > 256: {args.updates_wide}) after {args.warmup} warm-up updates"),
                f" — {args.note}" if args.note else ""),
            "",
            "`weights`: non-zero Linear weights of actor + critic. `upd/s (CPU)`: updates per CPU-second of the benchmark process (one thread), the primary figure "
            "on a shared machine: wall time also counts the time other processes held the cores. "
            "`vs dense`: against dense 256-wide of the same algorithm; `vs masked`: against the same method "
            "and sparsity with the masked backend. `csr layers`: compressed / managed Linear layers (ERK keeps "
            "the small input/output layers dense or nearly so; `csr` compresses every layer that has inactive "
            "connections, `auto` only those where its measured crossover says the CSR kernels win at batch "
            "256). RLx2 samples 3-step windows.",
            "",
            *lines,
            "",
            sbx,
            *([""] + profile_lines if profile_lines else []),
        ]
        upsert_section(args.results_md, SECTION, "\n".join(body))
        print(f"updated the {SECTION} section of {args.results_md}")


if __name__ == "__main__":
    main()
