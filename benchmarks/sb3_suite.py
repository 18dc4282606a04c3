"""Stable-Baselines3 callbacks: final returns and the callbacks' cost on SB3's env steps/s.

    .venv/bin/pip install 'sparserl[sb3]'
    .venv/bin/python benchmarks/sb3_suite.py --results-md docs/RESULTS.md
    .venv/bin/python benchmarks/sb3_suite.py --scale 0.01 --seeds 1 --results-md /tmp/sb3.md   # smoke run

PPO on CartPole-v1 and LunarLander-v3, SAC on Pendulum-v1 (RL-Zoo-like hyperparameters, short
budgets), each dense, with ``SparseTrainingCallback("rigl")`` at 90% and 95% sparsity, and with
``StructuredPruningCallback()`` (defaults of ``--method structured``). Topology updates and
prune events happen every ``planned gradient steps / --events`` steps, so a run of any budget
gets about ``--events`` of them. Return: mean over ``--eval-episodes`` deterministic episodes
after training, then mean +- sd over seeds. Speed: env steps/s of ``model.learn()`` (rollouts
and updates, callbacks included); ``vs dense`` is the median over seeds of the ratio to the
dense run of the same task and seed, run right before it (methods alternate within a seed so
machine load hits them alike). Sparse layers are simulated with dense matmuls on masked
weights, so RigL's figure is the bookkeeping cost; structured pruning also gains speed from
the physically smaller network. Writes the ``sb3-callbacks`` section of ``--results-md``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

TASKS = {
    "ppo-cartpole": dict(algo="PPO", env="CartPole-v1", steps=100_000, n_envs=8,
                         kwargs=dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                                     ent_coef=0.0, learning_rate=1e-3, clip_range=0.2)),
    "ppo-lunarlander": dict(algo="PPO", env="LunarLander-v3", steps=300_000, n_envs=16,
                            kwargs=dict(n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4,
                                        ent_coef=0.01)),
    "sac-pendulum": dict(algo="SAC", env="Pendulum-v1", steps=20_000, n_envs=1,
                         kwargs=dict(learning_rate=1e-3)),
}
METHODS = ("dense", "rigl-90", "rigl-95", "structured")


def make_callback(method: str, planned: int, events: int):
    from sparserl.integrations.sb3 import SparseTrainingCallback, StructuredPruningCallback

    every = max(1, planned // events)
    if method == "dense":
        return None
    if method.startswith("rigl-"):
        return SparseTrainingCallback("rigl", sparsity=int(method.split("-")[1]) / 100, delta=every)
    return StructuredPruningCallback(prune_every=every)


def kept_weights(callback, dense_weights: int) -> float:
    """Fraction of the managed Linear weights left: non-zeros (sparse) or physical (structured)."""
    if callback is None:
        return 1.0
    if hasattr(callback, "sparse"):
        masks = [m for s in callback.sparse.values() for m in s.masks.values()]
        return sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    return sum(l.weight.numel() for c in callback.chains.values() for l in c.chain) / dense_weights


def run(task: dict, method: str, seed: int, args) -> dict:
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from sparserl.integrations.sb3 import planned_gradient_steps, prunable_chains

    torch.manual_seed(seed)
    env = make_vec_env(task["env"], n_envs=task["n_envs"], seed=seed)
    model = getattr(sb3, task["algo"])("MlpPolicy", env, seed=seed, device="cpu", **task["kwargs"])
    steps = max(1, int(task["steps"] * args.scale))
    callback = make_callback(method, max(1, planned_gradient_steps(model, steps)), args.events)
    dense_weights = sum(l.weight.numel() for c in prunable_chains(model).values() for l in c.chain)
    t0 = time.perf_counter()
    model.learn(steps, callback=callback)
    wall = time.perf_counter() - t0
    eval_env = make_vec_env(task["env"], n_envs=1, seed=seed + 10_000)
    ret, _ = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    return {"return": float(ret), "sps": model.num_timesteps / wall, "kept": kept_weights(callback, dense_weights),
            "steps": model.num_timesteps}


def fmt_mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every task's env-step budget")
    parser.add_argument("--events", type=int, default=40, help="topology updates / prune events per run (about)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--results-md", default=None, help="Markdown file whose sb3-callbacks section is replaced")
    args = parser.parse_args()
    if "dense" not in args.methods:
        parser.error("--methods must include dense (the speed reference)")
    torch.set_num_threads(1)

    results: dict[tuple[str, str], list[dict]] = {}
    for seed in range(args.seeds):
        for name in args.tasks:
            for method in args.methods:
                r = run(TASKS[name], method, seed, args)
                results.setdefault((name, method), []).append(r)
                print(f"{name:16s} {method:10s} seed {seed}: return {r['return']:8.1f}  "
                      f"{r['sps']:7.0f} steps/s  kept {r['kept']:.3f}", flush=True)

    import stable_baselines3
    from sparserl.bench.results_md import benchmark_header

    # SB3 finishes the rollout in progress, so a run may take more env steps than requested
    budgets = ", ".join(f"{n} {max(1, int(TASKS[n]['steps'] * args.scale)):,} (taken: "
                        f"{results[(n, 'dense')][0]['steps']:,})" for n in args.tasks)
    lines = [
        *benchmark_header(
            "Stable-Baselines3 callbacks", sys.argv,
            f"; SB3 {stable_baselines3.__version__}; env steps requested: {budgets}; seeds 0..{args.seeds - 1}; "
            f"~{args.events} topology updates / prune events per run; {args.eval_episodes} eval episodes"),
        "",
        "`kept weights`: non-zero (RigL) or physically remaining (structured: MLP chains) fraction of the "
        "Linear weights. `vs dense`: median over seeds of env steps/s relative to the dense run of the same "
        "task and seed. Sparse layers are simulated (dense matmuls on masked weights).",
        "",
        "| task | method | return (mean ± sd over seeds) | kept weights | env steps/s | vs dense |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.tasks:
        dense = results[(name, "dense")]
        for method in args.methods:
            rs = results[(name, method)]
            ratio = statistics.median(r["sps"] / d["sps"] for r, d in zip(rs, dense))
            lines.append(f"| {name} | {method} | {fmt_mean_sd([r['return'] for r in rs])} | "
                         f"{np.mean([r['kept'] for r in rs]):.3f} | {statistics.median(r['sps'] for r in rs):.0f} | "
                         f"{ratio:.2f}x |")
    print("\n".join(lines))
    if args.results_md:
        from sparserl.bench.results_md import upsert_section
        upsert_section(args.results_md, "sb3-callbacks", "\n".join(lines))
        print(f"updated the sb3-callbacks section of {args.results_md}")


if __name__ == "__main__":
    main()
