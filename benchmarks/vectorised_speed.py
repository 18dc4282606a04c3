"""Agent-updates per second of a vectorised group (``sparserl train --seeds``) against K = 1.

    PYTHONPATH=. .venv/bin/python benchmarks/vectorised_speed.py --ks 1 4 8 16 --updates 100

TD3 on Hopper-v5 shapes (2x256, batch 256), one torch thread. For each configuration (dense;
RLx2 at 98 %/95 % with the masked backend and with the csr backend) and each K, a group of K
members is built, its replay buffers filled with random transitions, and ``--updates`` stacked
updates are timed after ``--warmup`` (topology updates every 25 updates, so their cost counts).
K = 1 is the single-agent path (``agent.update`` on its own minibatch), the baseline of each
configuration. Reported: agent-updates/s (K x updates / s) and its ratio to K = 1 measured in the
same process, rows alternating over ``--repeats`` rounds (median). Only the update is timed: env
steps, acting and evaluation are done per member and are not batched yet.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from sparserl.config import TrainConfig, resolve
from sparserl.trainer import Trainer
from sparserl.vectorised import GroupTrainer

CONFIGS = {
    "dense": dict(method="dense"),
    "rlx2-98/95 masked": dict(method="rlx2", actor_sparsity=0.98, critic_sparsity=0.95, sparse_backend="masked"),
    "rlx2-98/95 csr": dict(method="rlx2", actor_sparsity=0.98, critic_sparsity=0.95, sparse_backend="csr"),
}


def build(k: int, extra: dict, out: str, fill: int):
    cfgs = [resolve(TrainConfig(algo="td3", env="Hopper-v5", steps=10 ** 6, learning_starts=fill,
                                seed=s, out=f"{out}/seed{s}", eval_every=0, progress=False, tensorboard=False,
                                torch_threads=1, topology_delta=25, preset="none", **extra))
            for s in range(k)]
    group = GroupTrainer(cfgs)
    for member in group.members:
        for _ in range(fill):
            member.collect_step()
            member.step += 1
    return group


def time_group(group, updates: int, warmup: int) -> float:
    active = list(range(len(group.members)))
    if len(active) == 1:  # the single-agent path
        member = group.members[0]

        def one():
            member.agent.update(member.sample_batch())
    else:
        def one():
            group._update(active)
    for _ in range(warmup):
        one()
    t0 = time.perf_counter()
    for _ in range(updates):
        one()
    return len(active) * updates / (time.perf_counter() - t0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fill", type=int, default=2000, help="random transitions per member buffer")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        groups = {(name, k): build(k, CONFIGS[name], f"{tmp}/{i}-{k}", args.fill)
                  for i, name in enumerate(args.configs) for k in args.ks}
        rates: dict = {key: [] for key in groups}
        for _ in range(args.repeats):
            for key, group in groups.items():
                rates[key].append(time_group(group, args.updates, args.warmup))
    print(f"torch {torch.__version__}, 1 thread, TD3 Hopper-v5 shapes 2x256, batch 256; "
          f"{args.updates} updates x {args.repeats} rounds (median)")
    print(f"| config | K | agent-updates/s | vs K = 1 |")
    print("|---|---|---|---|")
    for name in args.configs:
        base = statistics.median(rates[(name, args.ks[0])])
        for k in args.ks:
            rate = statistics.median(rates[(name, k)])
            print(f"| {name} | {k} | {rate:.0f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
