"""Throughput of our dense agents vs Stable-Baselines3 at identical settings, side by side.

    .venv/bin/pip install stable-baselines3      # benchmark-only dependency
    .venv/bin/python benchmarks/throughput.py --steps 4000 --learning-starts 1000

Both sides: one torch thread, MLP 2x256, batch 256, Adam, 1 gradient step per env step
(DQN: the same train_freq / target interval), no evaluation, no logging.  Reported per
run: wall time of the whole run, gradient updates/s and env steps/s; then our/SB3 ratios.
Runs alternate (ours, SB3, ours, SB3, ...) so machine noise hits both alike; the median
over ``--repeats`` is reported.  Writes its table into the ``throughput`` section of docs/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch

CASES = [("td3", "Hopper-v5"), ("sac", "Hopper-v5"), ("dqn", "CartPole-v1")]


def run_ours(algo: str, env: str, steps: int, learning_starts: int, seed: int) -> tuple[float, int]:
    from sparserl.config import TrainConfig, resolve
    from sparserl.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        extra = dict(train_freq=1)
        if algo == "dqn":  # SB3's DQN: vanilla (not double) target, same schedule as run_sb3
            extra = dict(train_freq=4, lr=2.5e-4, target_update_every=500, tau=1.0, eps_fraction=0.5,
                         eps_end=0.05, double_q=False)
        cfg = resolve(TrainConfig(algo=algo, env=env, steps=steps, seed=seed, out=out, learning_starts=learning_starts,
                                  eval_every=0, eval_episodes=1, checkpoint_every=0, progress=False,
                                  tensorboard=False, batch_size=256, gradient_steps=1, buffer_size=steps,
                                  hidden=[256, 256], **extra))
        trainer = Trainer(cfg)
        t0 = time.perf_counter()
        trainer.train()
        return time.perf_counter() - t0, trainer.agent.critic_updates


def run_sb3(algo: str, env: str, steps: int, learning_starts: int, seed: int) -> tuple[float, int]:
    import stable_baselines3 as sb3

    common = dict(learning_rate=3e-4, buffer_size=steps, learning_starts=learning_starts, batch_size=256,
                  gamma=0.99, train_freq=1, gradient_steps=1, seed=seed, device="cpu", verbose=0,
                  policy_kwargs=dict(net_arch=[256, 256]))
    if algo == "td3":
        model = sb3.TD3("MlpPolicy", env, tau=0.005, policy_delay=2, **common)
    elif algo == "sac":
        model = sb3.SAC("MlpPolicy", env, tau=0.005, **common)
    else:
        common.update(learning_rate=2.5e-4, train_freq=4)
        model = sb3.DQN("MlpPolicy", env, tau=1.0, target_update_interval=500, exploration_fraction=0.5,
                        exploration_final_eps=0.05, **common)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    return time.perf_counter() - t0, int(model._n_updates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-md", default="docs/RESULTS.md",
                        help="Markdown file whose 'throughput' section is (re)written ('' to skip)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for algo, env in CASES:
        steps = args.steps * (4 if algo == "dqn" else 1)  # DQN updates every 4th step
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(run_ours(algo, env, steps, args.learning_starts, args.seed))
            theirs.append(run_sb3(algo, env, steps, args.learning_starts, args.seed))
        o_t = statistics.median(t for t, _ in ours)
        s_t = statistics.median(t for t, _ in theirs)
        o_u, s_u = ours[0][1], theirs[0][1]
        row = dict(algo=algo, env=env, steps=steps, ours_s=o_t, sb3_s=s_t, ours_ups=o_u / o_t, sb3_ups=s_u / s_t,
                   ours_sps=steps / o_t, sb3_sps=steps / s_t)
        row["ratio_ups"] = row["ours_ups"] / row["sb3_ups"]
        row["ratio_sps"] = row["ours_sps"] / row["sb3_sps"]
        rows.append(row)
        print(f"{algo:4s} {env:12s} ours {o_t:6.1f}s {row['ours_ups']:7.1f} upd/s {row['ours_sps']:7.1f} sps | "
              f"SB3 {s_t:6.1f}s {row['sb3_ups']:7.1f} upd/s {row['sb3_sps']:7.1f} sps | "
              f"ratio upd/s {row['ratio_ups']:.2f}x  sps {row['ratio_sps']:.2f}x", flush=True)
    import stable_baselines3
    from sparserl.bench.results_md import benchmark_header
    lines = [
        *benchmark_header(
            "Throughput: dense agents vs Stable-Baselines3 (issue: foundation benchmark)", sys.argv,
            f", SB3 {stable_baselines3.__version__}; seed {args.seed}; median of {args.repeats} alternating repeats",
            " (above ~1 means other processes shared the 2 cores with both sides)"),
        "",
        "| algo | env | env steps | ours upd/s | SB3 upd/s | ratio upd/s | ours env steps/s | SB3 env steps/s | ratio steps/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['algo']} | {r['env']} | {r['steps']} | {r['ours_ups']:.1f} | {r['sb3_ups']:.1f} | "
                     f"{r['ratio_ups']:.2f}x | {r['ours_sps']:.1f} | {r['sb3_sps']:.1f} | {r['ratio_sps']:.2f}x |")
    print("\n".join(lines))
    if args.results_md:
        from sparserl.bench.results_md import upsert_section
        upsert_section(args.results_md, "throughput", "\n".join(lines))
        print(f"updated the throughput section of {args.results_md}")


if __name__ == "__main__":
    main()
