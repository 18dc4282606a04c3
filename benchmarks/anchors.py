"""Dense anchors at equal budget: published learning curves next to our dense TD3/SAC/DQN runs.

Is our dense baseline as strong as a published one at the same number of env steps?  CleanRL and
the SB3 zoo's benchmark tables give only one number per run (after 1M steps for MuJoCo, and the
zoo's is its best checkpoint), so this script reads three public sources that keep whole learning
curves, at a chosen step, and prints them beside the dense cells of ``sparserl bench`` run
directories: the evaluation return AT the step (the "final" return of a run that stops there) and
the best evaluation up to it (what a best-checkpoint report shows).  Rerunnable::

    git clone https://github.com/sfujim/TD3 /tmp/TD3
    git clone https://github.com/DLR-RM/rl-trained-agents /tmp/rl-trained-agents
    git clone https://github.com/thu-ml/tianshou /tmp/tianshou
    git -C /tmp/tianshou checkout 39acf2094d96268d92ebb54dcbfc3de76d702567   # the curves were removed later
    python benchmarks/anchors.py --step 100000 --td3-paper /tmp/TD3/learning_curves \\
        --zoo /tmp/rl-trained-agents --tianshou /tmp/tianshou \\
        --runs runs/hopper100k --runs runs/struct_mujoco --runs runs/sac_hopper100k
    python benchmarks/anchors.py --step 50000 --zoo /tmp/rl-trained-agents --algo dqn --env CartPole \\
        --runs runs/struct_cartpole

The sources (each row of the table names its own; what differs from our settings is in
``SETTINGS`` below and printed under the table):

* ``td3-paper``: the TD3 paper's own curves (Fujimoto et al., ICML 2018; sfujim/TD3,
  ``learning_curves/``): TD3 only, 10 seeds, an evaluation about every 5,000 env steps.
* ``sb3-zoo``: the SB3 zoo's published agents (DLR-RM/rl-trained-agents, ``ALGO/ENV_1/
  evaluations.npz``, the zoo's ``config.yml`` beside it): ONE training run per algorithm and env,
  evaluated every 10,000 (DQN, SAC) or 25,000 (TD3) steps.  With one run the ± is over that run's
  evaluation episodes, not over seeds.
* ``tianshou``: Tianshou's MuJoCo benchmark (thu-ml/tianshou, ``examples/mujoco/benchmark/ENV-v3/
  ALGO/test_rew_10seeds.csv`` at commit 39acf20): 10 seeds, an evaluation every 5,000 steps.
  Its ``env_step`` starts counting after the random warm-up (``mujoco_ALGO.py`` collects
  ``--start-timesteps`` before the trainer starts), so env step S is its row S - warm-up (SAC 10k,
  TD3 25k).
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

ALGOS = ("td3", "sac", "dqn")
ENVS = {"td3": ("Hopper", "Walker2d"), "sac": ("Hopper", "Walker2d"), "dqn": ("CartPole", "LunarLander")}
ZOO_FOLDERS = {"Hopper": "Hopper-v3_1", "Walker2d": "Walker2d-v3_1", "CartPole": "CartPole-v1_1",
               "LunarLander": "LunarLander-v2_1"}  # env -> the zoo's run folder (its env versions)

TD3_PAPER_EVERY = 5000  # the TD3 repository's curves: one evaluation every 5,000 env steps, from step 0
TD3_PAPER_FOLDERS = {"Hopper": "Hopper", "Walker2d": "Walker"}  # env -> folder under learning_curves/

TIANSHOU_WARMUP = {"sac": 10_000, "td3": 25_000}  # mujoco_{sac,td3}.py --start-timesteps at 39acf20

SETTINGS = {
    "td3-paper": "TD3 paper: gym -v1 envs (old mujoco-py), 1,000 random warm-up steps, 400-300 networks, "
                 "batch 100, lr 1e-3; evaluated (10 noise-free episodes) at the first episode end after "
                 "each 5,000 steps",
    "sb3-zoo": "SB3 zoo: one training run (the ± is over its 10 or 20 deterministic evaluation episodes), the "
               "zoo's config.yml; DQN on CartPole-v1 / LunarLander-v2: the hyper-parameters of sparserl's "
               "--preset tuned, with SB3's plain max target where sparserl uses Double DQN; SAC/TD3 on gym -v3 "
               "envs, learning_starts 10000, SAC 256x256, lr 3e-4, ent_coef auto from 1.0; TD3 400-300, "
               "lr 3e-4 and NO exploration noise on Hopper, lr 1e-3 and Gaussian noise 0.1 on Walker2d",
    "tianshou": "Tianshou (39acf20): gym -v3 envs, 256x256, 10 deterministic test episodes; TD3 lr 3e-4, 25k "
                "warm-up (ours: 10k); SAC lr 1e-3, FIXED alpha 0.2 (no auto-tuning), 10k warm-up; read at "
                "env step S = its row S - warm-up",
}


class Reading(NamedTuple):
    """One source read at a step: ``at_step`` holds one value per seed (or, for a single run, its
    evaluation episodes: ``per_seed`` False); ``best`` the best evaluation up to the step, per seed
    (one value for a single run)."""
    at_step: np.ndarray
    best: np.ndarray
    per_seed: bool = True


def td3_paper_at(curves_dir: str | Path, algo: str, env: str, step: int) -> Reading | None:
    """The TD3 paper's per-seed evaluation returns at env step ``step`` (TD3 only)."""
    if algo != "td3":
        return None
    if step % TD3_PAPER_EVERY:
        raise SystemExit(f"--step {step}: the TD3 paper's curves are evaluated every "
                         f"{TD3_PAPER_EVERY} steps; use a multiple of {TD3_PAPER_EVERY}")
    folder = Path(curves_dir) / TD3_PAPER_FOLDERS[env]
    files = sorted(glob.glob(str(folder / f"TD3_{env}-v1_*.npy")))
    if not files:
        raise SystemExit(f"--td3-paper {curves_dir}: no TD3_{env}-v1_*.npy under {folder}")
    index = step // TD3_PAPER_EVERY
    curves = [np.load(f) for f in files]
    if any(len(c) <= index for c in curves):
        last = (min(map(len, curves)) - 1) * TD3_PAPER_EVERY
        raise SystemExit(f"--step {step}: the TD3 paper's curves end at step {last}")
    upto = np.array([c[: index + 1] for c in curves], dtype=float)
    return Reading(upto[:, -1], upto.max(axis=1))


def zoo_at(zoo_dir: str | Path, algo: str, env: str, step: int) -> Reading | None:
    """The SB3 zoo agent's evaluation episodes at ``step`` (one run: the episodes, not seeds)."""
    path = Path(zoo_dir) / algo / ZOO_FOLDERS[env] / "evaluations.npz"
    if not path.is_file():
        return None
    data = np.load(path)
    steps = np.asarray(data["timesteps"])
    hit = np.flatnonzero(steps == step)
    if not len(hit):
        raise SystemExit(f"--step {step}: {path} has evaluations at steps "
                         f"{', '.join(map(str, steps[:5]))}, ... only")
    means = np.asarray(data["results"], dtype=float).mean(axis=1)
    return Reading(np.asarray(data["results"][hit[0]], dtype=float), np.array([means[steps <= step].max()]),
                   per_seed=False)


def tianshou_at(root: str | Path, algo: str, env: str, step: int) -> Reading | None:
    """Tianshou's per-seed test returns at env step ``step`` (columns ``rew:seed_*`` of its 10-seed
    CSV, row ``step`` minus the warm-up its ``env_step`` does not count)."""
    path = Path(root) / "examples" / "mujoco" / "benchmark" / f"{env}-v3" / algo / "test_rew_10seeds.csv"
    if not path.is_file() or algo not in TIANSHOU_WARMUP:
        return None
    row_step = step - TIANSHOU_WARMUP[algo]
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if int(float(row["env_step"])) <= row_step:
                rows.append((int(float(row["env_step"])),
                             [float(v) for k, v in row.items() if k.startswith("rew:seed_")]))
    if not rows or rows[-1][0] != row_step:
        raise SystemExit(f"--step {step}: no row with env_step {row_step} (= {step} - the "
                         f"{TIANSHOU_WARMUP[algo]} warm-up steps) in {path}")
    upto = np.array([values for _, values in rows])
    return Reading(upto[-1], upto.max(axis=0))


SOURCES = {"td3-paper": td3_paper_at, "sb3-zoo": zoo_at, "tianshou": tianshou_at}


def _config_without_out(cell: Path) -> str:
    lines = (cell / "config.yaml").read_text().splitlines() if (cell / "config.yaml").is_file() else []
    return "\n".join(line for line in lines if not line.startswith("out:"))


def ours_at(runs_dirs: list[str], algo: str, env: str, step: int, label: str = "dense") -> Reading:
    """Our cells' (``label``: a bench cell label, ``dense`` or e.g. ``dense-tianshou``) evaluation
    returns at ``step`` and best up to it (each seed's metrics.csv), one per env id and seed: a
    cell copied into another suite (struct_mujoco.yaml shares hopper100k's dense cells) counts
    once, from the first directory given; two different runs under one env id and seed (their
    config.yaml differ beyond ``out``) are an error, not a silent pick."""
    import pandas as pd

    by_seed: dict[tuple[str, str], tuple[float, float]] = {}
    configs: dict[tuple[str, str], str] = {}
    for runs_dir in runs_dirs:
        for metrics in sorted(Path(runs_dir).glob(f"{algo}/{env}-v*/{label}/seed*/metrics.csv")):
            cell = metrics.parent
            key = (cell.parent.parent.name, cell.name)
            config = _config_without_out(cell)
            if key in configs:
                if configs[key] != config:
                    raise SystemExit(f"{cell}: another run of {key[0]} {key[1]} with a different config "
                                     f"was given first; pass one of them")
                continue
            frame = pd.read_csv(metrics).dropna(subset=["eval_return"])
            hit = frame.loc[frame["step"] == step, "eval_return"]
            if len(hit):
                configs[key] = config
                best = frame.loc[frame["step"] <= step, "eval_return"].max()
                by_seed[key] = (float(hit.iloc[-1]), float(best))
    values = np.array(list(by_seed.values())).reshape(-1, 2)
    return Reading(values[:, 0], values[:, 1])


def describe(values: np.ndarray, per_seed: bool = True) -> str:
    if not len(values):
        return "–"
    text = f"{values.mean():.0f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.0f}"  # sample sd
    if not per_seed:
        return f"{text} (1 run, {len(values)} episodes)"
    return (f"{text} (median {np.median(values):.0f}, n = {len(values)}: "
            f"{', '.join(f'{v:.0f}' for v in values)})")


def describe_best(values: np.ndarray) -> str:
    if not len(values):
        return "–"
    return f"{values.mean():.0f}" + (f" (n = {len(values)})" if len(values) > 1 else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--td3-paper", "--curves", dest="td3_paper", default=None,
                   help="the learning_curves folder of a clone of sfujim/TD3")
    p.add_argument("--zoo", default=None, help="a clone of DLR-RM/rl-trained-agents")
    p.add_argument("--tianshou", default=None, help="a clone of thu-ml/tianshou at commit 39acf20")
    p.add_argument("--step", type=int, default=100_000, help="env step to compare at")
    p.add_argument("--algo", action="append", choices=ALGOS, help="algorithm(s); default: td3 and sac")
    p.add_argument("--env", action="append", choices=sorted({e for es in ENVS.values() for e in es}),
                   help="environment(s); default: all of each algorithm's")
    p.add_argument("--runs", action="append", default=[],
                   help="sparserl bench run directory with dense cells (repeatable)")
    p.add_argument("--label", default="dense",
                   help="which of our cells to compare: their bench label (default dense; e.g. dense-tianshou)")
    args = p.parse_args(argv)
    if args.step <= 0:
        p.error(f"--step must be a positive number of env steps, got {args.step}")
    given = {name: root for name, root in (("td3-paper", args.td3_paper), ("sb3-zoo", args.zoo),
                                           ("tianshou", args.tianshou)) if root}
    if not given:
        p.error("name at least one source: --td3-paper, --zoo or --tianshou")
    rows, used = [], []  # everything read before anything is printed: an error leaves no half table
    for algo in args.algo or ("td3", "sac"):
        for env in ENVS[algo]:
            if args.env and env not in args.env:
                continue
            ours = ours_at(args.runs, algo, env, args.step, args.label)
            for name, root in given.items():
                anchor = SOURCES[name](root, algo, env, args.step)
                if anchor is None:
                    continue
                used.append(name)
                rows.append(f"| {algo.upper()} | {env} | {name} | {describe(anchor.at_step, anchor.per_seed)} "
                            f"| {describe(ours.at_step)} | {describe_best(anchor.best)} "
                            f"| {describe_best(ours.best)} |")
    if not rows:
        raise SystemExit("no anchor found for the chosen --algo/--env in the given sources")
    at = f"{args.step:,}"
    print(f"| Algo | Env | Anchor | anchor at {at} steps | sparserl {args.label} at {at} steps "
          f"| anchor best up to {at} | sparserl best up to {at} |")
    print("|---|---|---|---|---|---:|---:|")
    print("\n".join(rows))
    print("\nMean ± sample standard deviation of the evaluation return at that step (over seeds, except "
          "where a row says 1 run: over its episodes); "
          "'best up to': the mean over seeds of each seed's best evaluation up to that step. Anchor "
          "settings that differ from sparserl's cells (which state their own):")
    for name in dict.fromkeys(used):
        print(f"- {SETTINGS[name]}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
