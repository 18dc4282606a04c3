"""Export a trained policy for deployment: standalone torch, ONNX, numpy-only npz, or C.

Everything is written from a :class:`PolicySpec` (``agent.policy_spec()``): the Linear chain
as float32 arrays, ReLU between layers, flatten-to-float32 preprocessing and the output head
(``tanh`` scaled to the action box, or ``argmax``).  Writers never branch on the algorithm.
torch and onnx are imported only by their own formats.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import UserError
from .spec import PolicySpec
from .storage import ExportReport, export_report, format_report, stored_layer

FORMATS = ("torch", "onnx", "npz", "c")
#: a run directory's own files: an export never writes over one, even with ``overwrite``
#: (``--out RUN/checkpoint.pt`` would destroy the run it exports)
RUN_FILES = ("checkpoint.pt", "resume.pt", "config.yaml", "summary.json", "metrics.csv")


def policy_spec_of(agent_or_spec, simplify: bool = True) -> PolicySpec:
    """The spec of an agent (anything with ``policy_spec()``) or a spec itself; with
    ``simplify`` dead hidden neurons are removed (:meth:`PolicySpec.without_dead_neurons`)."""
    spec = agent_or_spec if isinstance(agent_or_spec, PolicySpec) else agent_or_spec.policy_spec()
    return spec.without_dead_neurons() if simplify else spec


def export_policy(agent_or_spec, fmt: str, out_path: str | Path, *, simplify: bool = True,
                  c_prefix: str = "sparserl", c_sparse_style: str = "auto",
                  overwrite: bool = False) -> ExportReport:
    """Write the policy in ``fmt`` (one of :data:`FORMATS`) to ``out_path``; returns the size
    report (per layer stored form, non-zeros, bytes; totals vs dense fp32).

    ``torch``: ``torch.export`` program (``torch.export.load(path).module()(obs_batch)``);
    ``onnx``: ONNX model, input ``obs`` ``[batch, *obs_shape]``, output ``action``;
    ``npz``: read by :class:`sparserl.runtime.Policy` (numpy only);
    ``c``: ``out_path`` (``.c``) plus the ``.h`` next to it (see :mod:`sparserl.export.c_format`).

    An existing file is replaced only with ``overwrite``; a run file (:data:`RUN_FILES`) never.
    Files are written into a temporary directory beside ``out_path`` and renamed into place, so
    a failed or killed export leaves any previous file intact."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    spec = policy_spec_of(agent_or_spec, simplify)
    out_path = Path(out_path)
    if out_path.is_dir():
        raise UserError(f"--out {out_path} is a directory; give a file path")
    blocking = next((p for p in out_path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"cannot write --out {out_path}: {blocking} is a file, not a directory")
    targets = [out_path, out_path.with_suffix(".h")] if fmt == "c" else [out_path]
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
            write_npz(spec, tmp_out)
        elif fmt == "c":
            from .c_format import write_c
            write_c(spec, tmp_out, prefix=c_prefix, sparse_style=c_sparse_style)
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
    return export_report(spec)


__all__ = ["FORMATS", "PolicySpec", "ExportReport", "export_policy", "export_report", "format_report",
           "policy_spec_of", "stored_layer"]
