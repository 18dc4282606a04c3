"""``sparserl report DIR``: aggregate a bench run directory into tables and plots.

What is computed (per ``algo / env / method-label``, over seeds; see :mod:`.stats`):

* ``return``: mean and 95 % percentile-bootstrap CI of ``final_eval_return``.
* ``pct_of_dense``: each run's score as % of the dense baseline,
  ``100 * (R - floor) / (mean_dense_R - floor)``; ``mean_dense_R`` is the mean final return of
  the dense baseline over its seeds (its uncertainty is not propagated), ``floor`` is the suite's
  ``score_floor[env]`` (default 0; give the random-policy return for envs with negative
  returns, e.g. Pendulum).  NaN when ``mean_dense_R <= floor``.  The dense baseline of
  ``method-tag`` is ``dense-tag`` if it exists, else ``dense``, of the same algo/env.
* ``pct_late_of_dense``: the same with each run's late return (the mean of its evaluations in the
  last quarter of its steps, at its final network size) instead of its final evaluation.
* ``pct_best_of_dense``: the same with each run's best evaluation at its final network size
  against the dense runs' mean best (the best-checkpoint convention; biased upwards).
* ``iqm_pct_of_dense`` (per algo, method-label): IQM over all runs (env x seed) of the %-of-dense
  scores, with a stratified (per env) bootstrap 95 % CI.
* ``size_ratio``: sum over networks of nonzero weights / sum of the dense baseline's total
  weights (the run's own totals if there is no dense baseline).
* ``train_flop_ratio`` / ``infer_flop_ratio``: ``flops.train_total`` / the dense baseline's
  mean ``train_total`` (``infer_per_action`` likewise); without a dense baseline the run's own
  ``train_dense_total`` / ``infer_dense_per_action``.
* ``sparsity``: 1 - nonzero / total of the run's own networks; ``wall_time_s``, ``updates_per_s``.
* ``collision_rate``: ``summary.json["final_collision_rate"]`` (envs that report
  ``info["crashed"]``, e.g. highway-env), mean over seeds; NaN for the cell unless every seed has it.

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

import csv
import io
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sparserl.errors import UserError

from . import stats
from .suite import env_from_dir_name

METHOD_ORDER = ["dense", "tiny", "static", "set", "rigl", "rlx2", "structured", "gmp"]
_SEED_DIR = re.compile(r"^seed(\d+)$")


@dataclass
class ReportData:
    run_dir: Path
    manifest: dict
    runs: pd.DataFrame                 # one row per finished run
    table: pd.DataFrame                # one row per (algo, env, label)
    iqm: pd.DataFrame                  # one row per (algo, label)
    expected_cells: int | None = None
    failures: list = field(default_factory=list)
    description: str = ""              # the suite's own words (budget caveats and all)


def method_sort_key(label: str) -> tuple:
    method, _, tag = label.partition("-")
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return (rank, method, tag)


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_metrics(path: Path, warn: bool = True) -> pd.DataFrame:
    """A run's metrics.csv as a frame, without a truncated last row: a run killed while
    appending leaves a row without its line end, with fewer fields than the header, or with a
    cut-off number (a field that is a number in the row before); read as data it would pass a
    wrong or missing evaluation for the run's last one. Such a row is skipped with a warning on
    stderr. Raises what ``pd.read_csv`` raises for an unreadable file."""
    lines = Path(path).read_text().splitlines(keepends=True)
    if len(lines) > 1:
        header, last = next(csv.reader([lines[0]])), next(csv.reader([lines[-1]]), [])
        previous = next(csv.reader([lines[-2]]), []) if len(lines) > 2 else []
        cut_number = any(v.strip() and not _is_number(v) and i < len(previous) and _is_number(previous[i])
                         for i, v in enumerate(last))
        if not lines[-1].endswith("\n") or len(last) < len(header) or cut_number:
            if warn:
                print(f"warning: {path}: skipping its truncated last row (line {len(lines)}: "
                      f"{lines[-1].strip()[:60]!r})", file=sys.stderr)
            lines = lines[:-1]
    return pd.read_csv(io.StringIO("".join(lines)))


_SIZE_COLUMNS = ("alive_", "sparsity_")  # metrics.csv columns that change when a network shrinks


LATE_FRACTION = 0.25  # the late-return window: evaluations in the last quarter of a run's steps
LATE_WINDOW = f"{100 * LATE_FRACTION:g} %"  # as the tables and plots name it


def _evals_at_final_size(cell_dir: Path) -> tuple[pd.DataFrame | None, bool]:
    """metrics.csv's evaluation rows of the network a run ends with, and whether the file had
    size columns (structured pruning's ``alive_*``, sparse training's ``sparsity_*``) to tell:
    the rows whose size columns equal the last row's. A network pruned during training must not
    be credited with an evaluation of its larger self from before the last prune; a run whose
    size never changes (dense, RigL, RLx2) keeps every row. ``(None, False)`` without a readable
    metrics.csv with evaluations."""
    try:
        frame = read_metrics(cell_dir / "metrics.csv")
    except FileNotFoundError:
        return None, False
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else type(exc).__name__
        print(f"warning: {cell_dir / 'metrics.csv'}: unreadable ({why}); the run's curve and late return "
              f"are left out", file=sys.stderr)
        return None, False
    if "eval_return" not in frame:
        return None, False
    frame = frame.dropna(subset=["eval_return"])
    if frame.empty:
        return None, False
    size = [c for c in frame.columns if c.startswith(_SIZE_COLUMNS)]
    if size:
        sizes = frame[size].to_numpy(float)
        frame = frame[np.isclose(sizes, sizes[-1], equal_nan=True).all(axis=1)]
    return frame, bool(size)


def final_size_returns(cell_dir: Path, steps: float, final: float, best: float) -> tuple[float, float]:
    """``(best, late)`` of the network a run ends with (see :func:`_evals_at_final_size`), from
    one read of its metrics.csv.

    * best: the maximum evaluation; without metrics.csv or size columns ``best`` (summary.json's).
    * late: the mean of the evaluations in the last quarter of the run (step > (1 -
      LATE_FRACTION) * steps): where a run ends, estimated from several evaluations instead of
      the single last one, whose 10 episodes swing widely on tasks such as LunarLander (a dense
      seed there evaluated 261 and 146 two evaluations apart). ``final`` (the last evaluation)
      when metrics.csv has no evaluation in that window (or no ``step`` column)."""
    frame, sized = _evals_at_final_size(cell_dir)
    if frame is None:
        return best, final
    best_here = float(frame["eval_return"].max()) if sized else best
    if "step" not in frame or not math.isfinite(steps):
        return best_here, final
    late = frame.loc[frame["step"] > (1.0 - LATE_FRACTION) * steps, "eval_return"]
    return best_here, float(late.mean()) if len(late) else final


#: summary.json fields the tables average: a run holding anything but a number there is skipped
_NUMBER_FIELDS = ("steps", "final_eval_return", "best_eval_return", "wall_time_s", "updates_per_s")


def check_score_floors(floors, where: str) -> dict[str, float]:
    """``score_floor`` as ``{env: float}``; a non-numeric floor is one line naming it."""
    if floors is None:
        return {}
    if not isinstance(floors, dict):
        raise UserError(f"{where}: score_floor must be a mapping of env id to a number, got {floors!r}")
    out = {}
    for env, value in floors.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{where}: score_floor {env}: {value!r} is not a finite number")
        out[str(env)] = float(value)
    return out


def collect_runs(run_dir: str | Path) -> pd.DataFrame:
    """One row per finished run (``ALGO/ENV/LABEL/seedK/summary.json``) under ``run_dir``."""
    root = Path(run_dir)
    rows = []
    for path in sorted(root.glob("*/*/*/seed*/summary.json")):
        cell = path.parent
        m = _SEED_DIR.match(cell.name)
        if not m:
            continue
        summary = _read_json(path)
        if summary is None:
            print(f"warning: skipping unreadable {path} (truncated or not a JSON object)", file=sys.stderr)
            continue
        mistyped = next(((k, summary[k]) for k in _NUMBER_FIELDS if summary.get(k) is not None
                         and (isinstance(summary[k], bool) or not isinstance(summary[k], (int, float)))), None)
        if mistyped is not None:  # read as NaN it would silently drop out of every mean
            print(f"warning: skipping {path}: {mistyped[0]} is {mistyped[1]!r}, not a number", file=sys.stderr)
            continue
        summary = {k: (v if not isinstance(v, list) else None) for k, v in summary.items()}
        for key in ("params", "flops", "neurons"):
            if not isinstance(summary.get(key), (dict, type(None))):
                summary[key] = None
        label = cell.parent.name
        row = _run_row(cell, summary, label, int(m.group(1)), str(cell.relative_to(root)))
        row["env"] = env_from_dir_name(cell.parent.parent.name)
        row["algo"] = cell.parent.parent.parent.name
        rows.append(row)
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


RUN_COLUMNS = ["algo", "env", "label", "method", "tag", "seed", "dir", "steps",
               "final_eval_return", "best_eval_return", "best_final_size_return", "late_return", "collision_rate",
               "wall_time_s", "updates_per_s",
               "nonzero", "total", "train_total", "train_dense_total", "infer_per_action",
               "infer_dense_per_action", "neurons_removed", "weights_removed"]


def _run_row(cell: Path, summary: dict, label: str, seed: int, dir_text: str) -> dict:
    """A runs-table row of the run in ``cell`` (algo and env are filled by the caller)."""
    method = str(summary.get("method") or label.partition("-")[0])
    tag = label[len(method) + 1:] if label.startswith(method + "-") else (
        "" if label == method else label.partition("-")[2])
    params = summary.get("params") or {}
    nonzero = sum(_num(p.get("nonzero")) for p in params.values() if isinstance(p, dict))
    total = sum(_num(p.get("total")) for p in params.values() if isinstance(p, dict))
    flops = summary.get("flops") or {}
    neurons = [b for b in (summary.get("neurons") or {}).values() if isinstance(b, dict)]

    def removed(kind: str) -> float:  # structured pruning: fraction removed over all MLPs
        total = sum(_num(b.get(f"{kind}_total")) for b in neurons)
        return 1.0 - sum(_num(b.get(f"{kind}_alive")) for b in neurons) / total if neurons and total else float("nan")

    best_final_size, late = final_size_returns(
        cell, _num(summary.get("steps")), _num(summary.get("final_eval_return")),
        _num(summary.get("best_eval_return")))
    return {
        "algo": "", "env": "", "label": label, "method": method, "tag": tag,
        "seed": seed, "dir": dir_text,
        "steps": _num(summary.get("steps")),
        "final_eval_return": _num(summary.get("final_eval_return")),
        "best_eval_return": _num(summary.get("best_eval_return")),
        "best_final_size_return": best_final_size, "late_return": late,
        "collision_rate": _num(summary.get("final_collision_rate")),
        "wall_time_s": _num(summary.get("wall_time_s")),
        "updates_per_s": _num(summary.get("updates_per_s")),
        "nonzero": nonzero if params else float("nan"),
        "total": total if params else float("nan"),
        "train_total": _num(flops.get("train_total")),
        "train_dense_total": _num(flops.get("train_dense_total")),
        "infer_per_action": _num(flops.get("infer_per_action")),
        "infer_dense_per_action": _num(flops.get("infer_dense_per_action")),
        "neurons_removed": removed("neurons"), "weights_removed": removed("weights"),
    }


#: config keys that say how a run was watched or stored, not what was trained: runs that differ
#: only in these (and the seed) are seeds of one experiment
_NOT_THE_EXPERIMENT = ("seed", "out", "progress", "tensorboard", "device", "torch_threads", "eval_every",
                       "eval_episodes", "checkpoint_every", "steps", "schedule_steps")


def find_plain_runs(path: Path) -> list[Path]:
    """The run directories in ``path``: itself when it holds a ``summary.json``, else every
    directory below it that does (a bench layout below is found the same way)."""
    if (path / "summary.json").is_file():
        return [path]
    return sorted(p.parent for p in path.rglob("summary.json") if p.is_file())


def _short(value) -> str:
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _config_tags(configs: list[dict]) -> list[str]:
    """Per run, ``key=value,...`` of the options in which the runs' configs differ (ignoring
    the seed and how runs were logged), so that different experiments are not pooled as seeds."""
    keys = sorted({k for c in configs for k in c} - set(_NOT_THE_EXPERIMENT))
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    return [",".join(f"{k}={_short(c.get(k))}" for k in differing) for c in configs]


def collect_plain_runs(paths: list[Path]) -> pd.DataFrame:
    """One row per finished ``sparserl train`` run in ``paths`` (run directories or directories
    holding them), with the columns of :func:`collect_runs`; ``dir`` is the run's absolute path.
    algo / env / method / seed come from ``summary.json`` (``config.yaml`` where it lacks one)."""
    found: list[tuple[Path, dict, dict]] = []
    seen: set[Path] = set()
    for path in paths:
        for run in find_plain_runs(path):
            if run.resolve() in seen:
                continue
            seen.add(run.resolve())
            summary = _read_json(run / "summary.json")
            if summary is None:
                print(f"warning: skipping unreadable {run / 'summary.json'}", file=sys.stderr)
                continue
            try:
                config = yaml.safe_load((run / "config.yaml").read_text()) or {}
            except (OSError, ValueError, yaml.YAMLError):
                config = {}
            found.append((run, summary, config if isinstance(config, dict) else {}))
    rows = []
    groups: dict[tuple, list[int]] = {}
    for i, (run, summary, config) in enumerate(found):
        key = tuple(str(summary.get(k) or config.get(k) or "?") for k in ("algo", "env", "method"))
        groups.setdefault(key, []).append(i)
    labels: dict[int, str] = {}
    for (_, _, method), members in groups.items():
        tags = _config_tags([found[i][2] for i in members])
        for i, tag in zip(members, tags):
            labels[i] = f"{method}-{tag}" if tag else method
    for i, (run, summary, config) in enumerate(found):
        seed = summary.get("seed", config.get("seed", 0))
        row = _run_row(run, summary, labels[i], int(seed) if str(seed).isdigit() else 0, str(run.resolve()))
        row["algo"] = str(summary.get("algo") or config.get("algo") or "?")
        row["env"] = str(summary.get("env") or config.get("env") or "?")
        rows.append(row)
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _baseline_label(labels: set[str], methods: dict[str, str], tag: str) -> str | None:
    if tag and f"dense-{tag}" in labels:
        return f"dense-{tag}"
    if "dense" in labels:
        return "dense"
    dense = sorted(lab for lab in labels if methods.get(lab) == "dense")
    return dense[0] if dense else None


def _ratio(num: float, den: float) -> float:
    if not (math.isfinite(num) and math.isfinite(den)) or den == 0:
        return float("nan")
    return num / den


def _pct_of(value: float, dense: pd.Series, floor: float) -> float:
    """``value`` as % of the dense runs' mean, both measured from ``floor``."""
    dense_mean = dense.mean() if len(dense) else float("nan")
    if not (math.isfinite(dense_mean) and dense_mean - floor > 0):
        return float("nan")
    return 100.0 * (value - floor) / (dense_mean - floor)


# each run's score column -> its "% of dense" column (the table adds that column's CI, see ci_columns)
PCT_OF_DENSE = {"final_eval_return": "pct_of_dense", "late_return": "pct_late_of_dense",
                "best_final_size_return": "pct_best_of_dense"}


def ci_columns(pct_column: str) -> tuple[str, str]:
    """The table's CI columns of a "% of dense" column: ``pct_late_of_dense`` ->
    ``pct_late_ci_low``, ``pct_late_ci_high``."""
    prefix = pct_column.removesuffix("_of_dense")
    return f"{prefix}_ci_low", f"{prefix}_ci_high"


def add_normalised(runs: pd.DataFrame, score_floor: dict | None = None) -> pd.DataFrame:
    """Add ``baseline``, ``pct_of_dense`` (final return), ``pct_late_of_dense`` (mean of the
    last quarter's evaluations against dense's), ``pct_best_of_dense`` (best evaluation of the
    final-size network against dense's best: the measure of benchmarks that report their best
    checkpoint, such as the SB3 zoo's), ``size_ratio``, flop ratios and ``sparsity`` columns."""
    runs = runs.copy()
    floor_of = score_floor or {}
    for col in ("baseline", *PCT_OF_DENSE.values(), "size_ratio", "train_flop_ratio", "infer_flop_ratio",
                "sparsity"):
        runs[col] = np.nan if col != "baseline" else ""
    for (algo, env), grp in runs.groupby(["algo", "env"], sort=False):
        labels = set(grp["label"])
        methods = dict(zip(grp["label"], grp["method"]))
        floor = float(floor_of.get(env, 0.0))
        for idx, row in grp.iterrows():
            base = _baseline_label(labels, methods, row["tag"])
            b = grp[grp["label"] == base] if base else grp.iloc[0:0]
            dense_total = b["total"].mean() if len(b) and b["total"].notna().any() else row["total"]
            dense_train = (b["train_total"].mean() if len(b) and b["train_total"].notna().any()
                           else row["train_dense_total"])
            dense_infer = (b["infer_per_action"].mean()
                           if len(b) and b["infer_per_action"].notna().any()
                           else row["infer_dense_per_action"])
            runs.loc[idx, "baseline"] = base or ""
            for score, pct in PCT_OF_DENSE.items():
                runs.loc[idx, pct] = _pct_of(row[score], b[score], floor)
            runs.loc[idx, "size_ratio"] = _ratio(row["nonzero"], dense_total)
            runs.loc[idx, "train_flop_ratio"] = _ratio(row["train_total"], dense_train)
            runs.loc[idx, "infer_flop_ratio"] = _ratio(row["infer_per_action"], dense_infer)
            runs.loc[idx, "sparsity"] = 1.0 - _ratio(row["nonzero"], row["total"])
    return runs


def aggregate(runs: pd.DataFrame, n_boot: int = stats.DEFAULT_BOOT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (algo, env, label) table and per (algo, label) IQM table."""
    rows = []
    for (algo, env, label), grp in runs.groupby(["algo", "env", "label"], sort=False):
        ret, ret_lo, ret_hi = stats.mean_ci(grp["final_eval_return"], n_boot=n_boot)
        pct_cis = {}
        for pct in PCT_OF_DENSE.values():
            mean, lo, hi = stats.mean_ci(grp[pct], n_boot=n_boot)
            pct_cis.update(zip((pct, *ci_columns(pct)), (mean, lo, hi)))
        rows.append({
            "algo": algo, "env": env, "label": label, "method": grp["method"].iloc[0],
            "baseline": grp["baseline"].iloc[0], "n_seeds": len(grp),
            "seeds": " ".join(str(s) for s in sorted(grp["seed"])),
            "steps": grp["steps"].max(),
            "return_mean": ret, "return_ci_low": ret_lo, "return_ci_high": ret_hi,
            "best_return_mean": grp["best_eval_return"].mean(),
            # a rate over some seeds only would read as one over all of them: all seeds or none
            "collision_rate": (grp["collision_rate"].mean() if grp["collision_rate"].notna().all()
                               else float("nan")),
            **pct_cis,
            "late_return_mean": grp["late_return"].mean(),
            "size_ratio": grp["size_ratio"].mean(),
            "train_flop_ratio": grp["train_flop_ratio"].mean(),
            "infer_flop_ratio": grp["infer_flop_ratio"].mean(),
            "sparsity": grp["sparsity"].mean(),
            "neurons_removed": grp["neurons_removed"].mean(),
            "weights_removed": grp["weights_removed"].mean(),
            "wall_time_s": grp["wall_time_s"].mean(),
            "updates_per_s": grp["updates_per_s"].mean(),
        })
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(
            ["algo", "env", "label"],
            key=lambda s: s.map(method_sort_key) if s.name == "label" else s,
        ).reset_index(drop=True)
    iqm_rows = []
    for (algo, label), grp in runs.groupby(["algo", "label"], sort=False):
        finite = grp[np.isfinite(grp["pct_of_dense"].astype(float))]
        by_env = {env: g["pct_of_dense"].to_numpy(float) for env, g in finite.groupby("env")}
        scores = finite["pct_of_dense"].to_numpy(float)
        lo, hi = stats.stratified_bootstrap_ci(by_env, "iqm", n_boot=n_boot)
        iqm_rows.append({"algo": algo, "label": label, "method": grp["method"].iloc[0],
                         "n_runs": len(scores), "n_envs": len(by_env),
                         "iqm_pct_of_dense": stats.iqm(scores), "iqm_ci_low": lo, "iqm_ci_high": hi})
    iqm = pd.DataFrame(iqm_rows)
    if len(iqm):
        iqm = iqm.sort_values(
            ["algo", "label"], key=lambda s: s.map(method_sort_key) if s.name == "label" else s,
        ).reset_index(drop=True)
    return table, iqm


def is_bench_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a bench grid (``ALGO/ENV/LABEL/seedK/summary.json``) or its manifest."""
    root = Path(path)
    return (root / "manifest.json").is_file() or any(
        _SEED_DIR.match(p.parent.name) for p in root.glob("*/*/*/seed*/summary.json"))


def load_report_data(run_dir: str | Path, n_boot: int = stats.DEFAULT_BOOT,
                     plain: list[Path] | None = None) -> ReportData:
    """The report of the bench grid in ``run_dir``, or with ``plain`` of those ``sparserl train``
    run directories (or directories holding them), written to ``run_dir``."""
    root = Path(run_dir)
    if plain is not None:
        runs = collect_plain_runs([Path(p) for p in plain])
        if runs.empty:
            raise UserError(f"no finished runs (summary.json) in {', '.join(str(p) for p in plain)}")
        runs = add_normalised(runs)
        table, iqm = aggregate(runs, n_boot=n_boot)
        return ReportData(root, {}, runs, table, iqm)
    if not root.is_dir():
        raise UserError(f"run directory not found: {root}")
    manifest = _read_json(root / "manifest.json") or {}
    runs = collect_runs(root)
    if runs.empty:
        raise UserError(f"no finished runs (*/*/*/seed*/summary.json) under {root}")
    floors = manifest.get("score_floor")
    description = ""
    try:  # the suite copy in DIR is the latest word (a floor may be edited after the run)
        raw = yaml.safe_load((root / "suite.yaml").read_text())
        if isinstance(raw, dict) and isinstance(raw.get("score_floor"), dict):
            floors = check_score_floors(raw["score_floor"], str(root / "suite.yaml"))
            manifest["score_floor"] = floors
        if isinstance(raw, dict):
            description = str(raw.get("description") or "")
    except (OSError, ValueError, yaml.YAMLError):
        pass
    runs = add_normalised(runs, check_score_floors(floors, str(root / "manifest.json")))
    table, iqm = aggregate(runs, n_boot=n_boot)
    failures = []
    fpath = root / "failures.json"
    if fpath.exists():
        try:
            failures = json.loads(fpath.read_text())
        except ValueError:
            failures = []
    expected = len(manifest["cells"]) if isinstance(manifest.get("cells"), list) else None
    return ReportData(root, manifest, runs, table, iqm, expected, failures, description)


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
        from .plots import (plot_buffer_curves, plot_learning_curves,  # noqa: PLC0415
                            plot_return_vs_neurons_removed, plot_return_vs_sparsity)

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
