"""Parameter and FLOP accounting for any module with optional masks (dense vs sparse).

Conventions (per sample, ``nn.Linear`` layers only):

* forward FLOPs of a layer = ``2 * weights`` (one multiply-add = 2 FLOPs) ``+ n_out`` if the
  layer has a bias (one add per output). Dense counts all ``n_out * n_in`` weights, sparse
  counts only non-zero weights. Activations, losses and other modules are not counted.
* non-zero weights: ``mask.sum()`` when a mask is given for the layer, otherwise the number
  of entries of the weight that are ``!= 0`` (masked weights are stored as exact zeros).
* training FLOPs per sample = 3 x forward: the forward pass, the backward pass w.r.t. the
  layer inputs (same cost as forward) and the backward pass w.r.t. the weights (same cost).
  A sparse implementation does all three on the non-zero weights only.
* RigL's topology update additionally needs the *dense* weight gradient on the update
  minibatch(es): extra = (dense_forward - sparse_forward) FLOPs per sample used for it
  (the weight-gradient pass done densely instead of sparsely). This module reports what a
  sparse implementation costs: the ``masked`` backend computes everything densely, the
  ``csr`` backend (``SparseTraining(backend="csr")``) runs such a sparse implementation.

Masks may be keyed by weight name (``"layers.0.weight"``) or module name (``"layers.0"``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Sequence

import torch
from torch import nn


@dataclass
class LayerFlops:
    name: str
    n_in: int
    n_out: int
    weights_total: int
    weights_nonzero: int
    bias: int
    flops_dense: int
    flops_sparse: int

    @property
    def density(self) -> float:
        return self.weights_nonzero / self.weights_total if self.weights_total else 1.0

    def as_dict(self) -> dict:
        return asdict(self)


def _mask_for(masks: Optional[Mapping[str, torch.Tensor]], name: str):
    if not masks:
        return None
    wname = f"{name}.weight" if name else "weight"
    return masks.get(wname, masks.get(name))


def layer_flops(module: nn.Module, masks: Optional[Mapping[str, torch.Tensor]] = None) -> list[LayerFlops]:
    """One row per ``nn.Linear`` of ``module`` (``named_modules()`` order)."""
    rows = []
    for name, m in module.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        n_out, n_in = m.weight.shape
        mask = _mask_for(masks, name)
        nnz = int(mask.sum()) if mask is not None else int((m.weight.detach() != 0).sum())
        bias = n_out if m.bias is not None else 0
        rows.append(LayerFlops(name, int(n_in), int(n_out), int(n_in * n_out), nnz, int(bias),
                               2 * int(n_in * n_out) + bias, 2 * nnz + bias))
    return rows


def totals(rows: Sequence[LayerFlops], name: str = "total") -> LayerFlops:
    """Sum of the rows (n_in / n_out of the total row: first layer's input, last layer's output)."""
    return LayerFlops(
        name,
        rows[0].n_in if rows else 0,
        rows[-1].n_out if rows else 0,
        sum(r.weights_total for r in rows),
        sum(r.weights_nonzero for r in rows),
        sum(r.bias for r in rows),
        sum(r.flops_dense for r in rows),
        sum(r.flops_sparse for r in rows),
    )


def forward_flops(module: nn.Module, masks: Optional[Mapping[str, torch.Tensor]] = None) -> tuple[int, int]:
    """``(dense, sparse)`` forward FLOPs per sample of all ``nn.Linear`` layers."""
    t = totals(layer_flops(module, masks))
    return t.flops_dense, t.flops_sparse


def training_flops_per_sample(forward: int) -> int:
    """Forward + input-gradient + weight-gradient passes = 3 x forward FLOPs."""
    return 3 * int(forward)


def dense_gradient_extra_flops(dense_forward: int, sparse_forward: int, samples: int = 1) -> int:
    """Extra FLOPs of computing the dense weight gradient for a RigL update on ``samples``
    samples (batch size x accumulated minibatches): the weight-gradient pass costs
    ``dense_forward`` instead of ``sparse_forward`` per sample."""
    return (int(dense_forward) - int(sparse_forward)) * int(samples)


def count_parameters(module: nn.Module, masks: Optional[Mapping[str, torch.Tensor]] = None) -> dict[str, int]:
    """Parameter counts of ``module``.

    ``total`` / ``nonzero``: ``nn.Linear`` weights only (all / non-zero, see module doc);
    ``bias``: ``nn.Linear`` biases (always dense); ``other``: every other parameter
    (e.g. a learned log-std), counted dense.
    """
    rows = layer_flops(module, masks)
    linear_params = set()
    for m in module.modules():
        if isinstance(m, nn.Linear):
            linear_params.update(id(p) for p in m.parameters(recurse=False))
    other = sum(p.numel() for p in module.parameters() if id(p) not in linear_params)
    return {"total": sum(r.weights_total for r in rows),
            "nonzero": sum(r.weights_nonzero for r in rows),
            "bias": sum(r.bias for r in rows),
            "other": int(other)}


_COLUMNS = ("name", "n_in", "n_out", "weights_total", "weights_nonzero", "density", "bias",
            "flops_dense", "flops_sparse")


def format_table(rows: Sequence[LayerFlops], total: bool = True) -> str:
    """A readable fixed-width text table of the rows, with a total row by default."""
    rows = list(rows)
    if total and rows:
        rows.append(totals(rows))
    cells = [list(_COLUMNS)]
    for r in rows:
        cells.append([r.name or "<root>", str(r.n_in), str(r.n_out), f"{r.weights_total:,}",
                      f"{r.weights_nonzero:,}", f"{r.density:.3f}", f"{r.bias:,}",
                      f"{r.flops_dense:,}", f"{r.flops_sparse:,}"])
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = []
    for k, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
        if k == 0 or (total and k == len(cells) - 2):
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
