"""Drive every run of a bench directory with its *exported* policy, next to its checkpoint.

A deployed policy is the exported file, not the training agent, so this is the number that
matters on the car: for each finished run it exports the policy (``npz``, run by the numpy-only
``sparserl.runtime``), then plays the same evaluation episodes (same seeds) with the checkpoint
and with the exported file, and reports return and collision rate (envs that report
``info["crashed"]``) for both, plus the exported file's size::

    python benchmarks/drive_exported.py runs/highway --episodes 50 [--results-md docs/RESULTS.md]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparserl.bench.results_md import benchmark_header, upsert_section  # noqa: E402


def drive(run_dir: Path, episodes: int, seed: int, workdir: str) -> dict:
    from sparserl.cli import load_agent
    from sparserl.export import export_policy
    from sparserl.export.cli import evaluate_exported
    from sparserl.trainer import evaluate

    cfg, agent, env = load_agent(run_dir)
    env.reset(seed=seed)  # as `sparserl eval` seeds it; evaluate_exported seeds the same way
    checkpoint = evaluate(agent, env, episodes)
    path = Path(workdir) / f"{run_dir.parent.name}-{run_dir.name}.npz"
    export_policy(agent, "npz", path)
    exported = evaluate_exported(run_dir, path, episodes, seed)
    return {"method": run_dir.parent.name, "seed": run_dir.name, "env": cfg.env, "checkpoint": checkpoint,
            "exported": exported, "bytes": path.stat().st_size}


def _cell(result) -> str:
    rate = result.collision_rate
    return f"{result.mean:.2f} ± {result.std:.2f}" + ("" if rate is None else f" | {rate:.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench_dir", type=Path, help="a `sparserl bench` run directory")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=12345, help="evaluation seed (sparserl eval's default)")
    p.add_argument("--results-md", help="also write the table into this Markdown file (own section)")
    args = p.parse_args(argv)
    if args.episodes <= 0:
        p.error(f"--episodes must be a positive integer, got {args.episodes}")
    runs = sorted(d.parent for d in args.bench_dir.glob("*/*/*/seed*/summary.json"))
    if not runs:
        p.error(f"no finished runs (*/*/*/seed*/summary.json) under {args.bench_dir}")
    with tempfile.TemporaryDirectory() as workdir:
        rows = [drive(run, args.episodes, args.seed, workdir) for run in runs]
    crashes = any(r["checkpoint"].collision_rate is not None for r in rows)
    extra = " | Collision rate" if crashes else ""
    lines = ["", f"Runs: `{args.bench_dir}`; {args.episodes} evaluation episodes per run, env seed {args.seed}, "
             "the same episodes for the checkpoint (torch) and the exported npz policy (numpy only).", "",
             f"| Env | Method | Seed | Checkpoint return{extra} | Exported return{extra} | npz bytes |",
             "|---|---|---|" + "---:|" * (3 + 2 * crashes)]
    for r in rows:
        lines.append(f"| {r['env']} | {r['method']} | {r['seed']} | {_cell(r['checkpoint'])} | "
                     f"{_cell(r['exported'])} | {r['bytes']:,} |")
    body = "\n".join(benchmark_header(f"Driving the exported policies ({args.bench_dir.name})", sys.argv, "")
                     + lines)
    print(body)
    if args.results_md:
        upsert_section(args.results_md, f"drive-exported-{args.bench_dir.name}", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
