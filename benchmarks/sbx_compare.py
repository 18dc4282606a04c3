"""Dense TD3 of sparserl against SBX's (JAX) on one pinned core, each through its own ``learn()``.

    .venv/bin/python benchmarks/sbx_compare.py --sbx-python /path/to/venv-with-sbx/bin/python \
        --results-md docs/RESULTS.md

(An environment with SBX: ``python -m venv sbxenv && sbxenv/bin/pip install torch==2.13.0 sbx-rl
"gymnasium[mujoco]"``; it is kept apart from sparserl's so that JAX's packages never change ours.)

Why a separate process per run, pinned to one core: SBX and torch each start thread pools
(XLA, intra-op) that would otherwise spread over every core and make "per update" depend on
how many cores the machine has. Each child pins itself to ``--core``, torch runs one thread and
XLA runs single-threaded (``XLA_FLAGS``), so both frameworks get exactly one core.

Why ``learn()``: it is what a user runs, and SBX's update is a jitted function whose shape
includes ``gradient_steps``; timing ``model.train(gradient_steps=N)`` with a new ``N`` times a
recompilation, not the update. Both loops step Hopper-v5, act, store and do one TD3 gradient
step per env step (``train_freq=1, gradient_steps=1``, policy delay 2, batch 256, 2x256 MLPs,
no evaluation). The window timed starts ``--skip`` env steps after learning starts (so the
JIT compile and the first-update allocations are outside it) and lasts ``--steps`` env steps.

Figures: env steps (= critic updates) per CPU-second of the child and per wall-second. On a
machine shared with other work the CPU-second figure is the one to read: wall time also counts
the time other processes held the core. The runs alternate (ours, SBX, ours, SBX, ...) so load
changes hit both alike; the median of ``--repeats`` is reported with the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HOPPER = "Hopper-v5"
SECTION = "sbx-compare"
TITLE = "Dense TD3 against SBX (one pinned core, each through its own learn())"
SINGLE_THREAD_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
                     "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu"}


class _Window:
    """Clock marks at two env-step counts: CPU and wall seconds between them."""

    def __init__(self, start: int, end: int):
        self.start, self.end = start, end
        self.marks: dict[str, tuple[float, float]] = {}

    def at(self, step: int) -> None:
        import time
        if step == self.start or step == self.end:
            self.marks["start" if step == self.start else "end"] = (time.process_time(), time.perf_counter())

    def result(self) -> dict:
        (c0, w0), (c1, w1) = self.marks["start"], self.marks["end"]
        n = self.end - self.start
        return {"per_cpu_s": n / (c1 - c0), "per_wall_s": n / (w1 - w0), "steps": n}


def run_sparserl(warmup: int, skip: int, steps: int, seed: int) -> dict:
    from sparserl import TD3

    window = _Window(warmup + skip, warmup + skip + steps)
    model = TD3(HOPPER, seed=seed, preset="none", learning_starts=warmup, batch_size=256, hidden=[256, 256],
                train_freq=1, gradient_steps=1, eval_every=0, torch_threads=1)
    model.learn(window.end, callback=lambda run: window.at(run.step))
    return window.result()


def run_sbx(warmup: int, skip: int, steps: int, seed: int) -> dict:
    from sbx import TD3 as SbxTD3
    from stable_baselines3.common.callbacks import BaseCallback

    window = _Window(warmup + skip, warmup + skip + steps)

    class Marks(BaseCallback):
        def _on_step(self) -> bool:
            window.at(self.num_timesteps)
            return True

    model = SbxTD3("MlpPolicy", HOPPER, seed=seed, learning_starts=warmup, batch_size=256, train_freq=1,
                   gradient_steps=1, policy_delay=2, policy_kwargs=dict(net_arch=[256, 256]), verbose=0)
    model.learn(window.end, callback=Marks())
    return window.result()


RUNNERS = {"sparserl": run_sparserl, "sbx": run_sbx}


def child(args) -> None:
    os.sched_setaffinity(0, {args.core})
    if args.framework == "sparserl":
        import torch
        torch.set_num_threads(1)
    print(json.dumps(RUNNERS[args.framework](args.warmup, args.skip, args.steps, args.seed)))


def measure(framework: str, python: str, args) -> dict:
    """Run one child and return its figures (raises with the child's stderr if it failed)."""
    cmd = [python, os.path.abspath(__file__), "--child", framework, "--core", str(args.core),
           "--warmup", str(args.warmup), "--skip", str(args.skip), "--steps", str(args.steps), "--seed", str(args.seed)]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, **SINGLE_THREAD_ENV, "PYTHONPATH": os.pathsep.join(
        p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{framework} run failed (rc {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args) -> dict:
    """Alternating repeats of both frameworks; medians and the ratio sparserl / SBX."""
    runs: dict[str, list[dict]] = {"sparserl": [], "sbx": []}
    for _ in range(args.repeats):
        for framework, python in (("sparserl", sys.executable), ("sbx", args.sbx_python)):
            runs[framework].append(measure(framework, python, args))
            print(f"{framework:8s} {runs[framework][-1]['per_cpu_s']:7.1f} updates/CPU-s "
                  f"{runs[framework][-1]['per_wall_s']:7.1f} updates/wall-s", flush=True)
    median = {f: {k: statistics.median(r[k] for r in rs) for k in ("per_cpu_s", "per_wall_s")}
              for f, rs in runs.items()}
    return {"runs": runs, "median": median,
            "ratio_cpu": median["sparserl"]["per_cpu_s"] / median["sbx"]["per_cpu_s"],
            "ratio_wall": median["sparserl"]["per_wall_s"] / median["sbx"]["per_wall_s"]}


def summary_line(result: dict, args) -> str:
    m = result["median"]
    return (f"Dense TD3 against SBX {HOPPER} through each one's `learn()` on one pinned core "
            f"(median of {args.repeats} alternating runs of {args.steps} env steps = updates, after "
            f"{args.warmup} warm-up + {args.skip} untimed learning steps): sparserl "
            f"{m['sparserl']['per_cpu_s']:.1f} updates per CPU-second, SBX {m['sbx']['per_cpu_s']:.1f}: "
            f"**{result['ratio_cpu']:.2f}x SBX** (wall: {m['sparserl']['per_wall_s']:.1f} vs "
            f"{m['sbx']['per_wall_s']:.1f}, {result['ratio_wall']:.2f}x).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sbx-python", default=sys.executable,
                        help="python of an environment with sbx-rl installed (default: this one)")
    parser.add_argument("--core", type=int, default=0, help="the CPU core both runs are pinned to")
    parser.add_argument("--warmup", type=int, default=1_000, help="random-action env steps before learning")
    parser.add_argument("--skip", type=int, default=300, help="untimed learning steps (JIT compile, allocations)")
    parser.add_argument("--steps", type=int, default=2_000, help="timed env steps (one update each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)


def versions(python: str) -> str:
    """jax / sbx versions of the SBX environment (for the RESULTS header)."""
    code = "import jax, importlib.metadata as m; print(jax.__version__, m.version('sbx-rl'))"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def write_section(path: str, result: dict, args) -> None:
    """Replace the ``sbx-compare`` section of a RESULTS file with this run's figures."""
    from sparserl.bench.results_md import benchmark_header, upsert_section

    jax_version, sbx_version = (versions(args.sbx_python).split() + ["?", "?"])[:2]
    rows = ["| run | framework | updates per CPU-s | updates per wall-s |", "|---|---|---:|---:|"]
    for framework, runs in result["runs"].items():
        for i, run in enumerate(runs):
            rows.append(f"| {i + 1} | {framework} | {run['per_cpu_s']:.1f} | {run['per_wall_s']:.1f} |")
    body = [*benchmark_header(TITLE, sys.argv, f"; SBX {sbx_version}, jax {jax_version} (XLA single-threaded); "
                                                f"both pinned to core {args.core}"),
            "", summary_line(result, args), "", *rows]
    upsert_section(path, SECTION, "\n".join(body))
    print(f"updated the {SECTION} section of {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--results-md", default=None, help="replace the sbx-compare section of this file")
    parser.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.framework = args.child
        child(args)
        return
    result = compare(args)
    print(summary_line(result, args))
    if args.results_md:
        write_section(args.results_md, result, args)


if __name__ == "__main__":
    main()
