"""Export a trained policy for deployment: standalone torch, ONNX, numpy-only npz, or C.

Everything is written from a :class:`PolicySpec` (``agent.policy_spec()``): the Linear chain
as float32 arrays, ReLU (or Tanh) between layers, flatten-to-float32 preprocessing and the
output head (``tanh`` scaled to the action box, ``argmax``, or ``clip``).  Writers never
branch on the algorithm.  torch and onnx are imported only by their own formats.  npz and C
can also be written with int8 weights (:mod:`sparserl.export.quant`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import UserError
import numpy as np

from .quant import DTYPES, SCALES
from .spec import PolicySpec
from .storage import ExportReport, export_report, format_report, stored_layer

FORMATS = ("torch", "onnx", "npz", "c")
#: formats that can store int8 weights (torch and ONNX runtimes bring their own quantizers)
INT8_FORMATS = ("npz", "c")
#: probe observations for the int8 error report when the caller has none (standard normal)
DEFAULT_PROBES = 256
#: a run directory's own files: an export never writes over one, even with ``overwrite``
#: (``--out RUN/checkpoint.pt`` would destroy the run it exports)
RUN_FILES = ("checkpoint.pt", "resume.pt", "config.yaml", "summary.json", "metrics.csv")


def policy_spec_of(agent_or_spec, simplify: bool = True) -> PolicySpec:
    """The spec of an agent (anything with ``policy_spec()``) or a spec itself; with
    ``simplify`` dead hidden neurons are removed (:meth:`PolicySpec.without_dead_neurons`)."""
    spec = agent_or_spec if isinstance(agent_or_spec, PolicySpec) else agent_or_spec.policy_spec()
    return spec.without_dead_neurons() if simplify else spec


def probe_observations(spec: PolicySpec, n: int = DEFAULT_PROBES, seed: int = 0) -> np.ndarray:
    """Standard-normal observations: the fallback probe set when no real ones are at hand."""
    return np.random.default_rng(seed).standard_normal((n, *spec.obs_shape)).astype(np.float32)


def quantization_report(spec: PolicySpec, obs, scales: str = "row", probe: str = "given") -> dict:
    """int8 vs float32 on ``obs``: the largest action difference measured, the largest
    guaranteed bound (:func:`sparserl.export.quant.error_bound`) and, for argmax heads, how
    often the greedy actions agree."""
    from .quant import error_bound, int8_forward
    obs = np.asarray(obs, np.float32).reshape(-1, spec.obs_dim)
    ref, got = spec.forward(obs), int8_forward(spec, obs, scales)
    _, act_bound = error_bound(spec, obs, scales)
    report = {"scales": scales, "probe": probe, "probe_count": int(len(obs)),
              "max_action_bound": float(act_bound.max())}
    if spec.head == "argmax":
        report["greedy_agreement"] = float(np.mean(ref == got))
        report["max_action_error"] = float(np.abs(spec.outputs(obs) - _int8_q(spec, obs, scales)).max())
        report["error_of"] = "Q-values"
    else:
        report["max_action_error"] = float(np.abs(ref.astype(np.float64) - got).max())
        report["error_of"] = "actions"
    return report


def _int8_q(spec, obs, scales):
    from .quant import int8_outputs
    return int8_outputs(spec, obs, scales).astype(np.float64)


def export_policy(agent_or_spec, fmt: str, out_path: str | Path, *, simplify: bool = True,
                  c_prefix: str = "sparserl", c_style: str = "auto", c_sparse_style: str | None = None,
                  dtype: str = "float32", scales: str = "row", c_example: bool = False,
                  probe_obs=None, probe: str | None = None, measure: bool = True,
                  overwrite: bool = False) -> ExportReport:
    """Write the policy in ``fmt`` (one of :data:`FORMATS`) to ``out_path``; returns the size
    report (per layer stored form, non-zeros, bytes; totals vs dense fp32).

    ``torch``: ``torch.export`` program (``torch.export.load(path).module()(obs_batch)``);
    ``onnx``: ONNX model, input ``obs`` ``[batch, *obs_shape]``, output ``action``;
    ``npz``: read by :class:`sparserl.runtime.Policy` (numpy only);
    ``c``: ``out_path`` (``.c``) plus the ``.h`` next to it (see :mod:`sparserl.export.c_format`):
    ``c_style`` ``auto``, ``arrays`` (sparse layers as value/index tables: least flash) or
    ``unrolled`` (weights as literals in the code: fastest), ``c_prefix`` names every symbol
    (two policies in one firmware), ``c_example`` also writes test vectors, a ``main.c`` and a
    Makefile snippet; the report then holds the flash and RAM of what was written.

    ``dtype="int8"`` (npz and c): int8 weights with ``scales`` ``row`` or ``layer``, int32 sums;
    the report states the action error against float32 on ``probe_obs`` (standard-normal
    observations if none are given).

    An existing file is replaced only with ``overwrite``; a run file (:data:`RUN_FILES`) never.
    Files are written into a temporary directory beside ``out_path`` and renamed into place, so
    a failed or killed export leaves any previous file intact."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    from .c_format import SPARSE_STYLES, check_prefix, example_names
    c_style = c_sparse_style if c_sparse_style is not None else c_style
    if c_style not in SPARSE_STYLES:
        raise UserError(f"--c-style {c_style!r}; allowed: {', '.join(SPARSE_STYLES)}")
    check_prefix(c_prefix)
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    if scales not in SCALES:
        raise UserError(f"--int8-scales {scales!r}; allowed: {', '.join(SCALES)}")
    if dtype == "int8" and fmt not in INT8_FORMATS:
        raise UserError(f"--dtype int8 with --format {fmt}: int8 is written for {' and '.join(INT8_FORMATS)} only")
    spec = policy_spec_of(agent_or_spec, simplify)
    out_path = Path(out_path)
    if out_path.is_dir():
        raise UserError(f"--out {out_path} is a directory; give a file path")
    blocking = next((p for p in out_path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"cannot write --out {out_path}: {blocking} is a file, not a directory")
    targets = [out_path, out_path.with_suffix(".h")] if fmt == "c" else [out_path]
    if fmt == "c" and c_example:
        targets += [out_path.parent / name for name in example_names(out_path.name)]
    if probe_obs is None and (dtype == "int8" or c_example):
        probe_obs, probe = probe_observations(spec), "standard-normal observations"
    footprint = None
    for target in targets:
        if target.name in RUN_FILES:
            raise UserError(f"--out {target}: {target.name} is a run file name ({', '.join(RUN_FILES)}); "
                            f"an export never writes over one: choose another file name")
        if target.exists() or target.is_symlink():
            if target.is_dir():
                raise UserError(f"cannot write {target}: it is a directory")
            if not overwrite:
                raise UserError(f"--out {target} exists; pass --overwrite to replace it or choose another path")
    tmp_dir = None
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        # same names inside (the generated .c includes its .h by name), same filesystem (rename)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent))
        tmp_out = tmp_dir / out_path.name
        if fmt == "npz":
            from .npz import write_npz
            write_npz(spec, tmp_out, dtype, scales)
        elif fmt == "c":
            from .c_format import write_c_measured
            footprint = write_c_measured(spec, tmp_out, prefix=c_prefix, sparse_style=c_style, dtype=dtype, scales=scales,
                                example_obs=probe_obs if c_example else None, measure=measure)
        elif fmt == "onnx":
            from .onnx_format import write_onnx
            write_onnx(spec, tmp_out)
        else:
            from .torch_format import write_torch
            write_torch(spec, tmp_out)
        for target in targets:
            os.replace(tmp_dir / target.name, target)
    except OSError as exc:
        raise UserError(f"cannot write --out {out_path}: {exc.strerror or exc}") from None
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    report = export_report(spec, dtype, scales)
    report.footprint = footprint
    report.file_bytes = sum(t.stat().st_size for t in targets)
    if dtype == "int8":
        report.quantization = quantization_report(spec, probe_obs, scales, probe or "given observations")
    return report


__all__ = ["FORMATS", "PolicySpec", "ExportReport", "export_policy", "export_report", "format_report",
           "policy_spec_of", "probe_observations", "quantization_report", "stored_layer"]
