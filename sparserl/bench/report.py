"""``sparserl report DIR``: aggregate a bench run directory into tables and plots.

The numbers (what is computed, per ``algo / env / method-label``) come from
:mod:`.report_data`; this module renders them as Markdown and CSV and calls :mod:`.plots`.

Plain ``sparserl train`` run directories (each holding its ``summary.json``) are reported too,
given one by one or as a directory holding them at any depth (:func:`collect_plain_runs`): runs
are grouped by algo / env / method from their summaries, and runs of one method whose configs
differ in more than the seed get a label naming the difference (``rigl-lr=0.001``). A group of one
run prints ``(n=1)`` instead of a confidence interval.

Outputs in DIR: ``report.md``, ``report.csv`` (one row per algo/env/method), ``report_iqm.csv``,
``runs.csv`` (one row per run) and ``plots/*.png`` (learning curves; buffer size and policy
distance per method where runs used a dynamic buffer; return vs sparsity).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sparserl.errors import UserError

from . import stats
from .plots import (plot_buffer_curves, plot_learning_curves, plot_return_vs_neurons_removed,
                    plot_return_vs_sparsity)
# the report's numbers live in report_data.py; these names stay importable from here
from .report_data import (LATE_FRACTION, LATE_WINDOW, METHOD_ORDER, PCT_OF_DENSE, RUN_COLUMNS,  # noqa: F401
                          ReportData, add_normalised, aggregate, check_score_floors, ci_columns,
                          collect_plain_runs, collect_runs, final_size_returns, find_plain_runs,
                          is_bench_dir, load_report_data, method_sort_key, read_metrics)


# --------------------------------------------------------------------------- Markdown

def _fmt(x: float, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}f}"


def _pct(x: float) -> str:
    return "" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f} %"


def _fmt_ci(m: float, lo: float, hi: float, digits: int = 1) -> str:
    """``m [lo, hi]``; ``m (n=1)`` where a single run gives no interval (see ``stats.mean_ci``)."""
    if not math.isfinite(float(m)):
        return "–"
    if not (math.isfinite(float(lo)) or math.isfinite(float(hi))):
        return f"{_fmt(m, digits)} (n=1)"
    return f"{_fmt(m, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _md_table(header: list[str], rows: list[list[str]], n_left: int = 2) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * n_left + ["---:"] * (len(header) - n_left)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_tables(data: ReportData) -> str:
    """The Markdown tables of a report (shared by report.md and docs/RESULTS.md)."""
    t, q = data.table, data.iqm
    labels = sorted(set(t["label"]), key=method_sort_key)
    non_dense = [lab for lab in labels if t.loc[t["label"] == lab, "method"].iloc[0] != "dense"]
    out = []
    if non_dense:  # a suite of dense runs only (a baseline suite) has no ratios to show
        out += _ratio_tables(t, q, non_dense)
    out += _absolute_table(t)
    return "\n".join(out) + "\n"


def _ratio_tables(t: pd.DataFrame, q: pd.DataFrame, non_dense: list[str]) -> list[str]:
    """% of dense (final, late and best) and size/FLOP ratios, a column per non-dense label."""
    out = []

    out.append("**Final return as % of dense** — mean over seeds [95 % bootstrap CI]; "
               "IQM rows: interquartile mean over all env × seed runs [stratified bootstrap CI].\n")
    rows = []
    for algo in sorted(set(t["algo"])):
        ta = t[t["algo"] == algo]
        for env in sorted(set(ta["env"])):
            te = ta[ta["env"] == env].set_index("label")
            cells = [_fmt_ci(te.loc[lab, "pct_of_dense"], te.loc[lab, "pct_ci_low"],
                             te.loc[lab, "pct_ci_high"]) if lab in te.index else "" for lab in non_dense]
            rows.append([algo.upper(), env, *cells])
        qa = q[q["algo"] == algo].set_index("label")
        cells = [f"**{_fmt_ci(qa.loc[lab, 'iqm_pct_of_dense'], qa.loc[lab, 'iqm_ci_low'], qa.loc[lab, 'iqm_ci_high'])}**"
                 if lab in qa.index and qa.loc[lab, "n_runs"] else "–" for lab in non_dense]
        rows.append([f"**{algo.upper()}**", "**IQM**", *cells])
    out.append(_md_table(["Algo", "Env", *non_dense], rows))

    out.append(f"\n**Late return as % of dense** — the mean of each run's evaluations in the last "
               f"{LATE_WINDOW} of its steps (at its final network size) against dense's, mean over "
               "seeds [95 % bootstrap CI]: where a run ends, from several evaluations instead of one.\n")
    out.append(_per_env_table(t, non_dense, _pct_cell("pct_late_of_dense")))

    out.append("\n**Best evaluation as % of dense's best** — each run's best evaluation during training "
               "at its final network size (a pruned network only after its last prune) against the dense "
               "runs' mean best, mean over seeds [95 % bootstrap CI]. The measure of "
               "benchmarks that report their best checkpoint (the SB3 zoo's); a maximum over noisy "
               "evaluations is biased upwards on both sides, so read it beside the final-return table.\n")
    out.append(_per_env_table(t, non_dense, _pct_cell("pct_best_of_dense")))

    out.append("\n**Size and FLOP ratios vs dense** — size / training FLOPs / inference FLOPs "
               "(size = nonzero weights of all networks / dense weights).\n")
    out.append(_per_env_table(t, non_dense, lambda r: " / ".join(
        _fmt(r[c], 3) for c in ("size_ratio", "train_flop_ratio", "infer_flop_ratio"))))
    out.append("")
    return out


def _pct_cell(pct_column: str):
    """A table cell formatter: the "% of dense" column with its CI."""
    return lambda r: _fmt_ci(r[pct_column], *(r[c] for c in ci_columns(pct_column)))


def _per_env_table(t: pd.DataFrame, labels: list[str], cell) -> str:
    """A row per (algo, env), a column per label, ``cell(row)`` in each (empty where the label
    did not run on that env)."""
    rows = []
    for (algo, env), te in t.groupby(["algo", "env"], sort=True):
        te = te.set_index("label")
        rows.append([algo.upper(), env, *[cell(te.loc[lab]) if lab in te.index else "" for lab in labels]])
    return _md_table(["Algo", "Env", *labels], rows)


def _absolute_table(t: pd.DataFrame) -> list[str]:
    """Final and late return, pruning and cost per (algo, env, label)."""
    out = ["**Absolute final return and cost** — mean [95 % bootstrap CI] over seeds; Late return: the "
           f"mean of each run's evaluations in the last {LATE_WINDOW} of its steps (at its final network "
           "size), mean over seeds.\n"]
    structured = bool(t["neurons_removed"].notna().any()) if "neurons_removed" in t else False
    crashes = bool(t["collision_rate"].notna().any()) if "collision_rate" in t else False
    rows = []
    for _, r in t.iterrows():
        pruned = ([_pct(r["neurons_removed"]), _pct(r["weights_removed"])] if structured else [])
        collisions = [_fmt(r["collision_rate"], 2)] if crashes else []
        rows.append([r["algo"].upper(), r["env"], r["label"], str(r["n_seeds"]), _fmt(r["steps"], 0),
                     _fmt_ci(r["return_mean"], r["return_ci_low"], r["return_ci_high"]),
                     _fmt(r["late_return_mean"]), *collisions,
                     _fmt(r["sparsity"], 3), *pruned, _fmt(r["wall_time_s"], 0), _fmt(r["updates_per_s"], 0)])
    pruned_cols = ["Neurons removed", "Weights removed"] if structured else []
    collision_cols = ["Collision rate"] if crashes else []
    out.append(_md_table(["Algo", "Env", "Method", "Seeds", "Steps", "Final return", "Late return", *collision_cols,
                          "Sparsity", *pruned_cols, "Wall-clock (s)", "Updates/s"], rows, n_left=3))
    if crashes:
        out.append("\nCollision rate: fraction of the final evaluation's episodes in which "
                   "`info[\"crashed\"]` was set (the ego vehicle hit another one), mean over seeds "
                   "(– unless every seed recorded it).")
    if structured:
        out.append("\nSparsity: zero weights inside the run's own networks (a physically shrunk network "
                   "is dense); Neurons/Weights removed: structured pruning, weights counted (n_in+1)·n_out.")
    return out


def render_header(data: ReportData) -> str:
    m = data.manifest
    mach = m.get("machine") or {}
    budgets = m.get("budgets") or {}
    seeds = m.get("seeds") or sorted(set(data.runs["seed"]))
    lines = []
    if data.description:
        lines.append(f"- Suite: {data.description}")
    if m.get("command"):
        lines.append(f"- Command: `{m['command']}`")
    if m.get("started_at"):
        lines.append(f"- Date: {m.get('started_at')} → {m.get('finished_at') or 'unfinished'}")
    if mach:
        extra = f", torch {mach['torch']}" if mach.get("torch") else ""
        lines.append(f"- Machine: {mach.get('platform')}, {mach.get('cpu_count')} CPUs "
                     f"({mach.get('processor')}), Python {mach.get('python')}{extra}; backend "
                     f"{m.get('backend')}, {m.get('workers') or 'auto'} workers"
                     + (f", Ray {m['ray_address']} ({m.get('ray_nodes')} nodes, "
                        f"{(m.get('ray_resources') or {}).get('CPU')} CPUs)"
                        if m.get("backend") == "ray" and m.get("ray_address") else ""))
    steps = budgets.get("steps") or sorted(set(data.runs["steps"].dropna().astype(int)))
    lines.append(f"- Budgets: {', '.join(str(int(s)) for s in steps)} env steps per run"
                 + (f"; evaluation every {', '.join(map(str, budgets['eval_every']))} steps, "
                    f"{', '.join(map(str, budgets['eval_episodes']))} episodes"
                    if budgets.get("eval_every") else ""))
    lines.append(f"- Seeds: {', '.join(str(s) for s in seeds)}")
    done = len(data.runs)
    if data.expected_cells is not None:
        lines.append(f"- Runs: {done} finished of {data.expected_cells}"
                     + (f"; {len(data.failures)} failed or missing (see failures.json)"
                        if data.failures else ""))
    else:
        lines.append(f"- Runs: {done} finished")
    if m.get("score_floor"):
        lines.append("- Score floors (0 % of dense): " + ", ".join(
            f"{k} = {v:g}" for k, v in sorted(m["score_floor"].items())))
    return "\n".join(lines) + "\n"


def make_report(run_dir: str | Path, n_boot: int = stats.DEFAULT_BOOT, plots: bool = True,
                plain: list[Path] | None = None) -> dict:
    """Write report.md, report.csv, report_iqm.csv, runs.csv and plots/ into ``run_dir``: the
    report of the bench grid there, or with ``plain`` of those ``sparserl train`` runs.

    Returns ``{"md", "csv", "iqm_csv", "runs_csv", "plots": [...], "data"}`` (paths; the data).
    """
    data = load_report_data(run_dir, n_boot=n_boot, plain=plain)
    root = data.run_dir
    root.mkdir(parents=True, exist_ok=True)
    paths = {"md": root / "report.md", "csv": root / "report.csv",
             "iqm_csv": root / "report_iqm.csv", "runs_csv": root / "runs.csv", "plots": []}
    data.table.to_csv(paths["csv"], index=False)
    data.iqm.to_csv(paths["iqm_csv"], index=False)
    data.runs.to_csv(paths["runs_csv"], index=False)
    if plots and (root / "plots").exists() and not (root / "plots").is_dir():
        raise UserError(f"{root / 'plots'} is not a directory (a file is there); move it, or pass --no-plots")
    if plots:
        paths["plots"] = (plot_learning_curves(data, root / "plots", n_boot=min(n_boot, 2000))
                          + plot_buffer_curves(data, root / "plots")
                          + plot_return_vs_sparsity(data, root / "plots")
                          + plot_return_vs_neurons_removed(data, root / "plots"))
    title = data.manifest.get("suite") or root.name
    md = [f"# Benchmark report: {title}\n" if plain is None else f"# Report: {len(data.runs)} runs\n",
          render_header(data), render_tables(data)]
    if paths["plots"]:
        md.append("\n**Plots**\n")
        md += [f"- [{p.name}]({p.relative_to(root).as_posix()})" for p in paths["plots"]]
        md.append("")
    md.append("\n<sub>Generated by `sparserl report`; conventions in "
              "`sparserl/bench/README.md`.</sub>\n")
    paths["md"].write_text("\n".join(md))
    paths["data"] = data
    return paths
