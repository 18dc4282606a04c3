"""Fixed-seed summaries of every method: the before/after check of a behaviour-preserving refactor.

    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/fixed_seed_summaries.py OUT.json
    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/fixed_seed_summaries.py OUT.json --compare BEFORE.json

Why: a refactor (moving code between modules, merging duplicated helpers) must leave every
number a run produces unchanged.  Each case is a short ``sparserl train`` (a few hundred
steps, topology / pruning events made frequent enough to happen) with a fixed seed; the
summary.json of each, minus its wall-clock fields, goes into one JSON file.  ``--compare``
reports every case whose numbers differ from an earlier file and exits 1 if any does.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

# wall-clock fields differ between any two runs; everything else must not
TIMING_KEYS = {"wall_time_s", "updates_per_s", "sps"}

COMMON = ["--steps", "400", "--learning-starts", "100", "--eval-every", "200", "--eval-episodes", "1",
          "--seed", "3", "--no-progress", "--no-tensorboard", "--torch-threads", "1"]
TD3 = ["--algo", "td3", "--env", "Pendulum-v1", "--hidden", "64", "64"]
DQN = ["--algo", "dqn", "--env", "CartPole-v1", "--hidden", "64", "64"]
TOPOLOGY = ["--topology-delta", "25"]
PRUNE = ["--prune-every", "20"]

CASES: dict[str, list[str]] = {
    "td3-dense": TD3 + ["--method", "dense"],
    "td3-tiny": TD3 + ["--method", "tiny"],
    "td3-static": TD3 + ["--method", "static"],
    "td3-set": TD3 + ["--method", "set"] + TOPOLOGY,
    "td3-rigl": TD3 + ["--method", "rigl"] + TOPOLOGY,
    "td3-rlx2": TD3 + ["--method", "rlx2"] + TOPOLOGY,
    "td3-gmp": TD3 + ["--method", "gmp"] + PRUNE,
    "td3-structured": TD3 + ["--method", "structured"] + PRUNE,
    "td3-neuron-magnitude": TD3 + ["--method", "neuron-magnitude"] + PRUNE,
    "dqn-dense": DQN + ["--method", "dense"],
    "dqn-rigl": DQN + ["--method", "rigl"] + TOPOLOGY,
    "dqn-gmp": DQN + ["--method", "gmp"] + PRUNE,
    "dqn-structured": DQN + ["--method", "structured"] + PRUNE,
}


def strip_timing(obj):
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


def run_case(args: list[str], out: str) -> dict:
    cmd = [sys.executable, "-m", "sparserl", "train", *COMMON, *args, "--out", out, "--overwrite"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"})
    with open(os.path.join(out, "summary.json")) as f:
        return strip_timing(json.load(f))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="JSON file the summaries go to")
    ap.add_argument("--compare", metavar="BEFORE.json", help="earlier output to compare against")
    ap.add_argument("--only", nargs="*", help="case names to run (default: all)")
    a = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            if a.only and name not in a.only:
                continue
            results[name] = run_case(case, os.path.join(tmp, name))
            print(name, "final", results[name]["final_eval_return"], flush=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    if not a.compare:
        return 0
    with open(a.compare) as f:
        before = json.load(f)
    differ = [n for n in results if before.get(n) != results[n]]
    for n in differ:
        print(f"DIFFERS: {n}")
    print("identical" if not differ else f"{len(differ)} of {len(results)} cases differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
