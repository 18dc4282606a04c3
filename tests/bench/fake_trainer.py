"""A stand-in for ``sparserl train`` used by the bench tests (stdlib only, fast).

Accepts the same arguments as the real command (unknown ``--options`` are recorded), sleeps
``FAKE_TRAINER_SLEEP`` seconds (default 0.2), then writes ``metrics.csv`` and, last and
atomically, ``summary.json`` following the run-directory contract.  Numbers are deterministic
functions of (algo, env, method, seed).  Fails (exit 3, message on stderr) when the method is
``crash`` or when ``algo/env/method/seed`` equals ``FAKE_TRAINER_FAIL``.
"""
import argparse
import json
import os
import sys
import time

BASE = {"dense": 1000.0, "tiny": 700.0, "static": 850.0, "set": 900.0, "rigl": 950.0,
        "rlx2": 1010.0}
DENSITY = {"dense": 1.0, "tiny": 1.0, "static": 0.1, "set": 0.1, "rigl": 0.1, "rlx2": 0.05}
TOTALS = {"actor": 70_000, "critic": 140_000}


def main() -> int:
    p = argparse.ArgumentParser()
    for name in ("algo", "method", "env", "out"):
        p.add_argument("--" + name, required=True)
    for name in ("seed", "steps", "eval-every", "eval-episodes"):
        p.add_argument("--" + name, type=int, required=True)
    args, extra = p.parse_known_args()
    os.makedirs(args.out, exist_ok=True)
    key = f"{args.algo}/{args.env}/{args.method}/{args.seed}"
    print(f"fake training {key} extra={extra}")
    time.sleep(float(os.environ.get("FAKE_TRAINER_SLEEP", "0.2")))
    if args.method == "crash" or os.environ.get("FAKE_TRAINER_FAIL") == key:
        print("Traceback (most recent call last):\nRuntimeError: fake trainer crashed on purpose "
              f"for {key}", file=sys.stderr)
        return 3
    env_scale = 1.0 + 0.5 * (sum(map(ord, args.env)) % 3)
    final = BASE.get(args.method, 500.0) * env_scale + 10.0 * args.seed
    evals = list(range(args.eval_every, args.steps + 1, args.eval_every)) or [args.steps]
    with open(os.path.join(args.out, "metrics.csv"), "w") as fh:
        fh.write("step,eval_return,episodes\n")
        for i, step in enumerate(evals, 1):
            fh.write(f"{step},{final * i / len(evals):.6f},{args.eval_episodes}\n")
    density = DENSITY.get(args.method, 0.5)
    scale = 0.3 if args.method == "tiny" else 1.0
    params = {n: {"total": int(t * scale), "nonzero": int(t * scale * density)}
              for n, t in TOTALS.items()}
    summary = {
        "algo": args.algo, "method": args.method, "env": args.env, "seed": args.seed,
        "steps": args.steps, "final_eval_return": final, "best_eval_return": final + 5.0,
        "wall_time_s": 1.0 + args.seed, "updates_per_s": 100.0,
        "params": params,
        "sparsity": {n: 1.0 - density for n in TOTALS},
        "flops": {"train_total": 1e9 * scale * density, "train_dense_total": 1e9 * scale,
                  "infer_per_action": 1e5 * scale * density, "infer_dense_per_action": 1e5 * scale},
        "extra_args": extra,
    }
    tmp = os.path.join(args.out, "summary.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(summary, fh)
    os.replace(tmp, os.path.join(args.out, "summary.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
