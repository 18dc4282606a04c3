"""Dense anchors at equal budget: the TD3 paper's own learning curves next to our dense runs.

Is our dense TD3 as strong as the published one at the same number of env steps?  The TD3
authors published every learning curve of their paper (Fujimoto et al., ICML 2018) as NumPy
arrays in their repository, github.com/sfujim/TD3, folder ``learning_curves/``: per environment
10 seeds, 201 evaluations each (about every 5,000 env steps from step 0 to 1M, each the mean
return of 10 noise-free episodes; the paper's training loop evaluated at the first episode end
after 5,000 more steps, so evaluation k falls at 5,000 k plus at most one episode).  This script reads them at a chosen step and prints them beside the
dense cells of a ``sparserl bench`` run directory, so the comparison is rerunnable::

    git clone https://github.com/sfujim/TD3 /tmp/TD3
    python benchmarks/anchors.py --curves /tmp/TD3/learning_curves --step 100000 \\
        --runs runs/hopper100k --env Hopper

Why these curves: they are the algorithm's own published numbers at every 5k steps, so they give
an anchor at 100k steps, where CleanRL and the SB3 zoo publish only final (1M-step) returns.
Differences to keep in mind, printed under the table: the paper used gym's Hopper-v1/Walker2d-v1
(old mujoco-py; sparserl uses the Gymnasium v5 envs), 1,000 random warm-up steps for these two envs, 400-300
networks, batch 100 and learning rate 1e-3.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

import numpy as np

EVAL_EVERY = 5000  # the TD3 repository's curves: one evaluation every 5,000 env steps, from step 0
CURVE_ENVS = {"Hopper": "Hopper", "Walker2d": "Walker"}  # env name -> folder under learning_curves/


def anchor_at(curves_dir: str | Path, env: str, step: int) -> np.ndarray:
    """The TD3 paper's per-seed evaluation returns of ``env`` at env step ``step``."""
    if step % EVAL_EVERY:
        raise SystemExit(f"--step {step}: the TD3 curves are evaluated every {EVAL_EVERY} steps; "
                         f"use a multiple of {EVAL_EVERY}")
    folder = Path(curves_dir) / CURVE_ENVS.get(env, env)
    files = sorted(glob.glob(str(folder / f"TD3_{env}-v1_*.npy")))
    if not files:
        raise SystemExit(f"--curves {curves_dir}: no TD3_{env}-v1_*.npy under {folder}")
    index = step // EVAL_EVERY
    curves = [np.load(f) for f in files]
    if any(len(c) <= index for c in curves):
        last = (min(map(len, curves)) - 1) * EVAL_EVERY
        raise SystemExit(f"--step {step}: the curves end at step {last}")
    return np.array([float(c[index]) for c in curves])


def ours_at(runs_dir: str | Path, env: str, step: int) -> np.ndarray:
    """Our dense TD3 cells' evaluation returns at ``step`` (from each seed's metrics.csv)."""
    import pandas as pd

    values = []
    for metrics in sorted(Path(runs_dir).glob(f"td3/{env}-v*/dense/seed*/metrics.csv")):
        frame = pd.read_csv(metrics)
        hit = frame.loc[frame["step"] == step, "eval_return"]
        if len(hit):
            values.append(float(hit.iloc[-1]))
    return np.array(values)


def describe(values: np.ndarray) -> str:
    if not len(values):
        return "–"
    return (f"{values.mean():.0f} ± {values.std():.0f} (median {np.median(values):.0f}, "
            f"n = {len(values)}: {', '.join(f'{v:.0f}' for v in values)})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--curves", required=True, help="the learning_curves folder of a clone of sfujim/TD3")
    p.add_argument("--step", type=int, default=100_000, help="env step to compare at (multiple of 5000)")
    p.add_argument("--env", action="append", choices=sorted(CURVE_ENVS), help="environment(s); default: all")
    p.add_argument("--runs", action="append", default=[],
                   help="sparserl bench run directory with dense TD3 cells (repeatable)")
    args = p.parse_args(argv)
    if args.step <= 0:
        p.error(f"--step must be a positive multiple of {EVAL_EVERY}, got {args.step}")
    rows = []  # everything read before anything is printed: an error leaves no half table
    for env in args.env or sorted(CURVE_ENVS):
        anchor = anchor_at(args.curves, env, args.step)
        ours = np.concatenate([ours_at(r, env, args.step) for r in args.runs]) if args.runs else np.array([])
        rows.append(f"| {env} | {describe(anchor)} | {describe(ours)} |")
    print(f"| Env | TD3 paper (sfujim/TD3 learning_curves) at {args.step:,} steps | "
          f"sparserl dense TD3 at {args.step:,} steps |")
    print("|---|---|---|")
    print("\n".join(rows))
    print("\nMean ± std over seeds of the evaluation return at that step.  The anchor ran gym's "
          "Hopper-v1/Walker2d-v1 (old mujoco-py) with 1,000 random warm-up steps, 400-300 networks, "
          "batch 100 and learning rate 1e-3, evaluating at the first episode end after each 5,000 "
          "steps; sparserl's cells state their own settings.")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
