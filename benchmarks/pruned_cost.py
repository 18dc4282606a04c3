"""What structured pruning actually saves, per finished run of a bench directory:
training wall-clock against the dense runs of the same env (the network shrinks during
training, so later updates are cheaper), the final parameter count, and act() latency at
batch 1 of each run's final policy (torch eager, and the exported numpy runtime and C),
all measured side by side in one process.

    python benchmarks/pruned_cost.py runs/struct_cartpole [--results-md docs/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import time_chunk  # noqa: E402

import sparserl  # noqa: E402
from sparserl.bench.results_md import benchmark_header, upsert_section  # noqa: E402
from sparserl.export import export_policy  # noqa: E402
from sparserl.export.c_format import compile_c, find_compiler  # noqa: E402
from sparserl.runtime import CPolicy, Policy  # noqa: E402


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("summary.json") if (p.parent / "checkpoint.pt").exists())


def measure(run: Path, seconds: float, workdir: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    model = sparserl.load(run)
    n_obs = int(np.prod(model._spaces["obs_shape"]))
    obs = np.random.default_rng(0).normal(size=(64, n_obs)).astype(np.float32)
    row = {"method": run.parent.name, "env": summary["env"], "seed": summary["seed"],
           "wall": summary["wall_time_s"], "return": summary["final_eval_return"],
           "params": sum(c["nonzero"] + c["bias"] for c in summary["params"].values()),
           "torch_us": 1e6 * time_chunk(lambda o: model.agent.act(o), obs, seconds)}
    # one file name per run: a shared name would make the C loader hand back a library already
    # loaded from that path (dlopen caches by path), i.e. another env's policy
    stem = f"{summary['env']}-{run.parent.name}-{run.name}"
    npz = workdir / f"{stem}.npz"
    model.export(npz, format="npz")
    policy = Policy.load(npz)
    row["npz_us"] = 1e6 * time_chunk(policy.act, obs, seconds)
    if find_compiler():
        c = workdir / f"{stem}.c"
        model.export(c, format="c")
        lib = compile_c([c], c.with_suffix(".so"))
        cpolicy = CPolicy(lib)
        row["c_us"] = 1e6 * time_chunk(cpolicy.act, obs, seconds)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench_dir", type=Path)
    parser.add_argument("--seconds", type=float, default=0.3, help="timing chunk per measurement")
    parser.add_argument("--results-md", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(run, args.seconds, Path(tmp)) for run in run_dirs(args.bench_dir)]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["env"], r["method"]), []).append(r)
    lines = ["", f"Runs: `{args.bench_dir}` (each row: mean over its seeds; act() at batch 1, best of short "
             "chunks, one process).", "",
             "| Env | Method | Seeds | Final return | Train wall-clock (s) | vs dense | Parameters | vs dense "
             "| act() torch (us) | act() npz runtime (us) | act() C (us) | torch dense / best compressed |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (env, method), rs in sorted(groups.items()):
        dense = groups.get((env, "dense"))
        mean = lambda key, g=rs: statistics.fmean(r[key] for r in g if key in r) if any(key in r for r in g) else float("nan")  # noqa: E731
        d = (lambda key: statistics.fmean(r[key] for r in dense)) if dense else (lambda key: float("nan"))
        best = min(mean("npz_us"), mean("c_us")) if any("c_us" in r for r in rs) else mean("npz_us")
        lines.append(f"| {env} | {method} | {len(rs)} | {mean('return'):.1f} | {mean('wall'):.0f} | "
                     f"{mean('wall') / d('wall'):.2f}x | {mean('params'):,.0f} | {mean('params') / d('params'):.3f} | "
                     f"{mean('torch_us'):.1f} | {mean('npz_us'):.1f} | {mean('c_us'):.2f} | "
                     f"{d('torch_us') / best:.1f}x |")
    lines += ["", "Wall-clock comes from each run's summary (cells shared the machine with other work, so "
              "compare it within this table only); parameters = non-zero weights + biases of all trained "
              "networks (actor and critics, or the Q-network)."]
    body = "\n".join(benchmark_header("Structured pruning: cost saved", sys.argv, "") + lines)
    print(body)
    if args.results_md:
        upsert_section(args.results_md, f"pruned-cost-{args.bench_dir.name}", body)


if __name__ == "__main__":
    main()
