"""How each layer is stored (dense or CSR, whichever takes fewer bytes; float32 or int8) and
the size report.

The npz file, the generated C and ``sparserl flops`` all use :func:`stored_layer`, so the
report states exactly what the files hold.  numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import PolicySpec

FLOAT_BYTES = 4


def index_dtype(max_value: int) -> np.dtype:
    """The narrowest unsigned index type that holds ``max_value`` (uint16 for layers up to
    65,535 wide or non-zeros): indices are most of a sparse layer's bytes."""
    return np.dtype(np.uint16) if max_value <= np.iinfo(np.uint16).max else np.dtype(np.int32)


@dataclass
class StoredLayer:
    """One Linear layer in its stored form.

    ``form == "dense"``: ``weight`` is (n_out, n_in).  ``form == "csr"``: row ``i``'s non-zeros
    are ``data[indptr[i]:indptr[i+1]]`` at input columns ``indices[...]`` (zero rows allowed)."""

    form: str
    n_in: int
    n_out: int
    nonzeros: int
    bias: np.ndarray
    weight: np.ndarray | None = None
    data: np.ndarray | None = None
    indices: np.ndarray | None = None
    indptr: np.ndarray | None = None
    scale: np.ndarray | None = None
    """int8 layers: float32 weight scales, one per row (``row``) or a single one (``layer``);
    ``weight``/``data`` then hold int8 values, ``value ~ scale * q``."""

    @property
    def dtype(self) -> str:
        return "float32" if self.scale is None else "int8"

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays (weights, indices, bias, scales)."""
        arrays = (self.bias, self.weight, self.data, self.indices, self.indptr, self.scale)
        return int(sum(a.nbytes for a in arrays if a is not None))

    @property
    def dense_nbytes(self) -> int:
        return FLOAT_BYTES * (self.n_in * self.n_out + self.n_out)

    def dense_weight(self) -> np.ndarray:
        """The stored values as a dense (n_out, n_in) array (int8 values for int8 layers)."""
        if self.form == "dense":
            return self.weight
        w = np.zeros((self.n_out, self.n_in), self.data.dtype)
        rows = np.repeat(np.arange(self.n_out), np.diff(self.indptr.astype(np.int64)))
        w[rows, self.indices.astype(np.int64)] = self.data
        return w


def csr_nbytes(n_in: int, n_out: int, nonzeros: int, value_bytes: int = FLOAT_BYTES) -> int:
    return (nonzeros * (value_bytes + index_dtype(n_in - 1).itemsize)
            + (n_out + 1) * index_dtype(nonzeros).itemsize)


def stored_layer(weight: np.ndarray, bias: np.ndarray, dtype: str = "float32", scales: str = "row") -> StoredLayer:
    """The layer as CSR when that takes fewer bytes than dense, else dense; ``dtype="int8"``
    stores the weights quantized (:func:`sparserl.export.quant.quantize_weight`).

    (With uint16 indices a float32 non-zero costs 4 bytes of value and 2 of index, so CSR wins
    below about 2/3 density; an int8 one 1 + 2, so CSR wins below about 1/3; small and dense
    layers stay dense.)"""
    weight = np.asarray(weight, np.float32)
    n_out, n_in = weight.shape
    nonzero = weight != 0
    nnz = int(nonzero.sum())
    bias = np.asarray(bias, np.float32)
    scale = None
    values = weight
    if dtype == "int8":
        from .quant import quantize_weight
        values, scale = quantize_weight(weight, scales)
        if scales == "layer":
            scale = scale[:1].copy()
    elif dtype != "float32":
        raise ValueError(f"unknown weight dtype {dtype!r}")
    value_bytes = values.dtype.itemsize
    if csr_nbytes(n_in, n_out, nnz, value_bytes) >= value_bytes * n_in * n_out:
        return StoredLayer("dense", n_in, n_out, nnz, bias, weight=np.ascontiguousarray(values), scale=scale)
    rows, cols = np.nonzero(nonzero)  # row-major order: rows ascending, columns ascending within
    indptr = np.zeros(n_out + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_out), out=indptr[1:])
    return StoredLayer("csr", n_in, n_out, nnz, bias, data=values[rows, cols].copy(),
                       indices=cols.astype(index_dtype(n_in - 1)), indptr=indptr.astype(index_dtype(nnz)),
                       scale=scale)


def stored_layers(spec: PolicySpec, dtype: str = "float32", scales: str = "row") -> list[StoredLayer]:
    return [stored_layer(w, b, dtype, scales) for w, b in zip(spec.weights, spec.biases)]


# -- the report ----------------------------------------------------------------------------
@dataclass
class LayerReport:
    name: str
    n_in: int
    n_out: int
    form: str
    nonzeros: int
    weights_total: int
    nbytes: int
    dense_nbytes: int


@dataclass
class ExportReport:
    layers: list[LayerReport]
    head: str
    hidden: list[int]
    removed_neurons: list[int]
    reference_hidden: list[int] | None
    reference_dense_nbytes: int | None
    """Dense fp32 bytes of the configured full-width network (None if unknown)."""
    dtype: str = "float32"
    footprint: dict | None = None
    """What the written form takes where it differs from the stored arrays: for C the flash
    (tables + code) and RAM (stack) of the generated source (:func:`sparserl.export.c_format.footprint`)."""
    file_bytes: int | None = None
    """Bytes of the files an export wrote (None for a report of no export)."""
    quantization: dict | None = None
    """int8 exports: the action error against float32 (measured and bounded, see :mod:`.quant`)."""

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.layers)

    @property
    def dense_nbytes(self) -> int:
        """Dense fp32 bytes of the exported (possibly shrunk) architecture."""
        return sum(r.dense_nbytes for r in self.layers)

    def as_dict(self) -> dict:
        return {"layers": [vars(r) for r in self.layers], "head": self.head, "hidden": self.hidden,
                "removed_neurons": self.removed_neurons, "bytes": self.nbytes,
                "dense_fp32_bytes": self.dense_nbytes, "reference_hidden": self.reference_hidden,
                "reference_dense_fp32_bytes": self.reference_dense_nbytes, "dtype": self.dtype,
                "footprint": self.footprint, "quantization": self.quantization, "file_bytes": self.file_bytes}


def dense_fp32_nbytes(dims: list[int]) -> int:
    return FLOAT_BYTES * sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def export_report(spec: PolicySpec, dtype: str = "float32", scales: str = "row") -> ExportReport:
    """Per layer: stored form, non-zeros, bytes; totals against dense fp32."""
    rows = [LayerReport(f"layer{i}", s.n_in, s.n_out, s.form if dtype == "float32" else f"{s.form} int8",
                        s.nonzeros, s.n_in * s.n_out, s.nbytes, s.dense_nbytes)
            for i, s in enumerate(stored_layers(spec, dtype, scales))]
    ref = None
    if spec.reference_hidden is not None:
        ref = dense_fp32_nbytes([spec.obs_dim, *spec.reference_hidden, spec.out_dim])
    return ExportReport(rows, spec.head, spec.hidden, list(spec.removed_neurons),
                        list(spec.reference_hidden) if spec.reference_hidden is not None else None, ref, dtype)


def format_report(report: ExportReport) -> str:
    """Fixed-width table plus one line per comparison with dense fp32."""
    header = ("layer", "n_in", "n_out", "stored", "nonzeros", "weights", "bytes", "dense_fp32_bytes")
    cells = [list(header)] + [[r.name, str(r.n_in), str(r.n_out), r.form, f"{r.nonzeros:,}",
                               f"{r.weights_total:,}", f"{r.nbytes:,}", f"{r.dense_nbytes:,}"]
                              for r in report.layers]
    cells.append(["all layers", "", "", "", f"{sum(r.nonzeros for r in report.layers):,}",
                  f"{sum(r.weights_total for r in report.layers):,}", f"{report.nbytes:,}",
                  f"{report.dense_nbytes:,}"])
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]).rstrip())
        if k == 0 or k == len(cells) - 2:
            lines.append("  ".join("-" * w for w in widths))
    label = "stored weight arrays" if report.footprint is not None else "model size"
    lines.append(f"{label}: {report.nbytes:,} bytes = {report.nbytes / max(report.dense_nbytes, 1):.3f} x dense fp32 "
                 f"of this architecture ({report.dense_nbytes:,} bytes, hidden {report.hidden})")
    if report.reference_dense_nbytes is not None:
        lines.append(f"            = {report.nbytes / report.reference_dense_nbytes:.3f} x the dense fp32 model "
                     f"of the configured widths ({report.reference_dense_nbytes:,} bytes, "
                     f"hidden {report.reference_hidden})")
    if any(report.removed_neurons):
        lines.append(f"dead neurons removed at export (per hidden layer): {report.removed_neurons}")
    if report.footprint is not None:
        lines.extend(format_footprint(report.footprint))
    if report.file_bytes is not None:
        lines.append(f"files written: {report.file_bytes:,} bytes on disk")
    if report.quantization is not None:
        lines.extend(format_quantization(report.quantization))
    return "\n".join(lines)


def format_footprint(fp: dict) -> list[str]:
    """The C form's flash and RAM: what the written source takes, not just its weight arrays."""
    lines = [f"C form written: {fp['styles']} ({fp['dtype']}): const tables {fp['tables_bytes']:,} bytes, "
             f"arrays on the stack as declared {fp['buffer_bytes']:,} bytes, no static RAM"]
    if fp.get("measured"):
        m = fp["measured"]
        lines.append(f"  compiled here ({m['compiler']} {' '.join(m['flags'])}, {m['machine']}): "
                     f"flash {m['flash_bytes']:,} bytes (code {m['text_bytes']:,} + const data "
                     f"{m['rodata_bytes']:,}), RAM {m['ram_bytes']:,} bytes (static {m['static_ram_bytes']:,} "
                     f"+ stack {m['stack_bytes']:,} for one action); other targets differ")
    else:
        unrolled = "; unrolled layers keep their weights in the code" if "unrolled" in fp["styles"] else ""
        lines.append(f"  code size not measured ({fp.get('why_not_measured', 'no C compiler')}){unrolled}")
    return lines


def format_quantization(q: dict) -> list[str]:
    what = "action" if q.get("error_of", "actions") == "actions" else "Q-value"
    lines = [f"int8 ({q['scales']} scales, int32 sums) vs float32 on {q['probe_count']} probe observations "
             f"({q['probe']}): largest {what} difference measured {q['max_action_error']:.3g}; guaranteed "
             f"worst-case bound {q['max_action_bound']:.3g} (the largest over the probes; per observation: "
             f"sparserl.export.quant.error_bound)"]
    if q.get("greedy_agreement") is not None:
        lines.append(f"  greedy action agrees with float32 on {100 * q['greedy_agreement']:.1f}% of the probes")
    return lines
