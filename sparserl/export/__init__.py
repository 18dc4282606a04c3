"""Export a trained policy for deployment: standalone torch, ONNX, numpy-only npz, or C.

Everything is written from a :class:`PolicySpec` (``agent.policy_spec()``): the Linear chain
as float32 arrays, ReLU between layers, flatten-to-float32 preprocessing and the output head
(``tanh`` scaled to the action box, or ``argmax``).  Writers never branch on the algorithm.
torch and onnx are imported only by their own formats.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .spec import PolicySpec
from .storage import ExportReport, export_report, format_report, stored_layer

FORMATS = ("torch", "onnx", "npz", "c")


def policy_spec_of(agent_or_spec, simplify: bool = True) -> PolicySpec:
    """The spec of an agent (anything with ``policy_spec()``) or a spec itself; with
    ``simplify`` dead hidden neurons are removed (:meth:`PolicySpec.without_dead_neurons`)."""
    spec = agent_or_spec if isinstance(agent_or_spec, PolicySpec) else agent_or_spec.policy_spec()
    return spec.without_dead_neurons() if simplify else spec


def export_policy(agent_or_spec, fmt: str, out_path: str | Path, *, simplify: bool = True,
                  c_prefix: str = "sparserl", c_sparse_style: str = "auto") -> ExportReport:
    """Write the policy in ``fmt`` (one of :data:`FORMATS`) to ``out_path``; returns the size
    report (per layer stored form, non-zeros, bytes; totals vs dense fp32).

    ``torch``: ``torch.export`` program (``torch.export.load(path).module()(obs_batch)``);
    ``onnx``: ONNX model, input ``obs`` ``[batch, *obs_shape]``, output ``action``;
    ``npz``: read by :class:`sparserl.runtime.Policy` (numpy only);
    ``c``: ``out_path`` (``.c``) plus the ``.h`` next to it (see :mod:`sparserl.export.c_format`)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    spec = policy_spec_of(agent_or_spec, simplify)
    out_path = Path(out_path)
    if out_path.is_dir():
        raise UserError(f"--out {out_path} is a directory; give a file path")
    blocking = next((p for p in out_path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"cannot write --out {out_path}: {blocking} is a file, not a directory")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "npz":
            from .npz import write_npz
            write_npz(spec, out_path)
        elif fmt == "c":
            from .c_format import write_c
            write_c(spec, out_path, prefix=c_prefix, sparse_style=c_sparse_style)
        elif fmt == "onnx":
            from .onnx_format import write_onnx
            write_onnx(spec, out_path)
        else:
            from .torch_format import write_torch
            write_torch(spec, out_path)
    except OSError as exc:
        raise UserError(f"cannot write --out {out_path}: {exc.strerror or exc}") from None
    return export_report(spec)


__all__ = ["FORMATS", "PolicySpec", "ExportReport", "export_policy", "export_report", "format_report",
           "policy_spec_of", "stored_layer"]
