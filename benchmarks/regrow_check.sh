#!/usr/bin/env bash
# Issue 21's discriminating run: RigL on TD3 HalfCheetah-v5 (actor/critic sparsity 0.9/0.85, 40k env
# steps, 5k random warm-up, topology update every 1,000 critic updates) with and without regrowth of
# just-dropped connections, same seeds, two runs at a time. Prints the final evaluation of each run.
#   bash benchmarks/regrow_check.sh [OUT_DIR] [SEEDS...]      (default: runs/regrow_check, seeds 21 22 23)
set -euo pipefail
out=${1:-runs/regrow_check}; shift || true
seeds=${*:-21 22 23}
py=${PYTHON:-python}
for s in $seeds; do
  for mode in regrow-dropped no-regrow-dropped; do
    $py -m sparserl train --algo td3 --env HalfCheetah-v5 --method rigl --steps 40000 --seed "$s" \
      --actor-sparsity 0.9 --critic-sparsity 0.85 --learning-starts 5000 --topology-delta 1000 \
      --eval-every 5000 --eval-episodes 5 --no-progress --torch-threads 1 --"$mode" \
      --out "$out/$mode/seed$s" > "$out.$mode.$s.log" 2>&1 &
  done
  wait
done
for mode in regrow-dropped no-regrow-dropped; do
  for s in $seeds; do
    printf '%s seed %s final %s\n' "$mode" "$s" "$($py -c "import json,sys; print(round(json.load(open(sys.argv[1]))['final_eval_return']))" "$out/$mode/seed$s/summary.json")"
  done
done
