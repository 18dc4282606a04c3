"""The dynamic buffer next to the learning curve: a second panel in a run's learning_curve.png and a
buffer plot per (algo, env) in `sparserl report` (hence in docs/RESULTS.md sections)."""
import csv
import json

import matplotlib.image as mpimg

from sparserl.bench import make_report
from sparserl.plots import learning_curve

ROWS = [{"step": s, "eval_return": 10.0 * k, "eval_return_std": 1.0} for k, s in enumerate((100, 200, 300))]
BUFFER = [{"policy_distance": d, "buffer_capacity": 1000, "buffer_size": n, "evicted": e}
          for d, n, e in ((0.5, 200, 0), (0.3, 270, 30), (0.1, 370, 0))]


def test_single_run_plot_gets_a_buffer_panel(tmp_path):
    plain, with_buffer = tmp_path / "plain.png", tmp_path / "buffer.png"
    learning_curve(ROWS, plain, "dense")
    learning_curve([{**r, **b} for r, b in zip(ROWS, BUFFER)], with_buffer, "rlx2")
    h_plain, h_buffer = mpimg.imread(plain).shape[0], mpimg.imread(with_buffer).shape[0]
    assert h_buffer > 1.4 * h_plain  # the extra panel below the learning curve
    # rows read back from metrics.csv (strings, empty cells before the first check) also work
    text_rows = [{k: str(v) for k, v in r.items()} for r in ROWS]
    text_rows[0].update(policy_distance="", buffer_size="", buffer_capacity="")
    for r, b in zip(text_rows[1:], BUFFER[1:]):
        r.update({k: str(v) for k, v in b.items()})
    learning_curve(text_rows, tmp_path / "text.png")
    assert mpimg.imread(tmp_path / "text.png").shape[0] == h_buffer


def _fake_run(root, env, label, seed, rows):
    cell = root / "td3" / env / label / f"seed{seed}"
    cell.mkdir(parents=True)
    summary = {"algo": "td3", "method": label, "env": env, "seed": seed, "steps": 300,
               "final_eval_return": float(rows[-1]["eval_return"]), "best_eval_return": 30.0,
               "wall_time_s": 1.0, "updates_per_s": 10.0,
               "params": {"actor": {"total": 100, "nonzero": 100 if label == "dense" else 10}},
               "flops": {"train_total": 1.0, "train_dense_total": 1.0, "infer_per_action": 1.0,
                         "infer_dense_per_action": 1.0}}
    (cell / "summary.json").write_text(json.dumps(summary))
    with (cell / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_report_plots_buffer_curves_where_runs_have_a_dynamic_buffer(tmp_path):
    root = tmp_path / "run"
    for seed in (0, 1):
        _fake_run(root, "Hopper-v5", "dense", seed, ROWS)
        _fake_run(root, "Hopper-v5", "rlx2", seed, [{**r, **b} for r, b in zip(ROWS, BUFFER)])
        _fake_run(root, "Walker2d-v5", "dense", seed, ROWS)  # no dynamic buffer anywhere: no plot
    paths = make_report(root, n_boot=200)
    names = {p.name for p in paths["plots"]}
    assert "buffer_td3_Hopper-v5.png" in names and "buffer_td3_Walker2d-v5.png" not in names
    assert {"learning_curves_td3_Hopper-v5.png", "learning_curves_td3_Walker2d-v5.png"} <= names
    assert "buffer_td3_Hopper-v5.png" in paths["md"].read_text()
