"""Compressed execution of masked Linear layers: CSR kernels for forward and both gradients.

Why: a masked layer stores its weight dense and multiplies it whole, so a 98%-sparse network
costs as much time as a dense one.  Here a layer keeps only its active weights, ``values``
(one entry per True of the mask, row-major order), and the index structure of the mask
(:class:`CsrLayout`).  Per call:

* forward ``y = x W^T + b`` is a CSR x dense product (``torch.addmm`` with a sparse CSR
  matrix; MKL on CPU), computed as ``(W x^T)^T`` so that the activations of consecutive
  sparse layers stay in the column-major layout the kernel reads fastest;
* the input gradient ``gx = gy W`` is a CSR x dense product with the transposed structure
  (kept alongside, its values are a permutation of ``values``);
* the weight gradient is computed *only at the non-zero positions* as a sampled dense-dense
  product (``torch.sparse.sampled_addmm``: for each active (i, j), ``sum_b gy[b, i] x[b, j]``),
  so no dense weight gradient is ever materialised ...
* ... except when the layer is asked to (``capture_dense_grad``): RigL grows connections
  by the dense gradient on topology-update steps, so on those steps the backward computes
  ``gy^T x`` densely, keeps it in ``dense_weight_grad`` and gathers the values' gradient from it.

A gather-based weight gradient (``(gy[:, rows] * x[:, cols]).sum(0)``) was measured too: it
needs a batch x nnz temporary and was 5-50x slower than ``sampled_addmm`` on CPU (256x256,
1-10% density, batch 256), so it is not used.

:class:`SparseLinear` is the module form: an ``nn.Linear`` subclass (so FLOP counting and
``isinstance`` checks keep working) whose trainable parameters are ``values`` and ``bias``.
Its ``weight`` attribute is a read-only dense reconstruction and its ``state_dict`` holds a
dense ``weight`` like ``nn.Linear``'s, so checkpoints, evaluation and export never see the
compressed form (see :meth:`SparseLinear._save_to_state_dict`).
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .masks import SparseExecution

# torch marks CSR support "beta" with a warning on first use; the calls used here are stable.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


class CsrLayout:
    """Index structure of one sparse weight of shape ``(n_out, n_in)``.

    ``flat`` holds the row-major flat positions of the active entries; ``values[k]`` is the
    weight at ``flat[k]``.  Built from a bool mask; immutable (a topology update builds a new
    layout).  Row-major order is canonical: the same mask always gives the same order, so
    optimizer state saved against one layout lines up with a layout rebuilt from the mask.
    """

    def __init__(self, mask: torch.Tensor):
        if mask.dim() != 2 or mask.dtype != torch.bool:
            raise ValueError(f"a CSR layout needs a 2-D bool mask, got {tuple(mask.shape)} {mask.dtype}")
        n_out, n_in = mask.shape
        self.shape = (int(n_out), int(n_in))
        self.n_out, self.n_in = self.shape
        flat = mask.reshape(-1).nonzero().squeeze(1)
        self.flat = flat
        self.nnz = int(flat.numel())
        rows, cols = flat // n_in, flat % n_in
        index = torch.int32 if self.nnz < 2 ** 31 - 1 else torch.int64
        self.crow = _row_pointers(rows, n_out).to(index)
        self.col = cols.to(index)
        # W^T in CSR form: the same entries ordered by (column, row); values_t = values[perm_t]
        self.perm_t = torch.argsort(cols * n_out + rows)
        self.crow_t = _row_pointers(cols, n_in).to(index)
        self.col_t = rows[self.perm_t].to(index)
        self.pattern = torch.sparse_csr_tensor(self.crow, self.col, torch.zeros(self.nnz, dtype=torch.float32),
                                               self.shape)

    @property
    def density(self) -> float:
        return self.nnz / (self.n_out * self.n_in)

    def __deepcopy__(self, memo):  # immutable: a deep-copied layer shares its layout
        return self

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """``W`` as a sparse CSR tensor sharing ``values``' storage."""
        return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape)

    def matrix_t(self, values: torch.Tensor) -> torch.Tensor:
        """``W^T`` as a sparse CSR tensor (values permuted into column order)."""
        return torch.sparse_csr_tensor(self.crow_t, self.col_t, values[self.perm_t], (self.n_in, self.n_out))

    def to_dense(self, values: torch.Tensor) -> torch.Tensor:
        """Dense ``W`` (zeros at inactive positions); differentiable w.r.t. ``values``."""
        dense = values.new_zeros(self.n_out * self.n_in)
        return dense.index_put((self.flat,), values).view(self.shape)

    def gather(self, dense: torch.Tensor) -> torch.Tensor:
        """The entries of a dense ``(n_out, n_in)`` tensor at the active positions."""
        return dense.reshape(-1)[self.flat]

    def mask(self) -> torch.Tensor:
        out = torch.zeros(self.n_out * self.n_in, dtype=torch.bool)
        out[self.flat] = True
        return out.view(self.shape)


def _row_pointers(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    pointers = torch.zeros(n_rows + 1, dtype=torch.int64)
    pointers[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return pointers


class _CsrLinear(torch.autograd.Function):
    """``y = x W^T + b`` with ``W`` given by (layout, values); see the module docstring."""

    @staticmethod
    def forward(ctx, x, values, bias, layout: CsrLayout, layer):
        x2 = x.reshape(-1, layout.n_in)
        w = layout.matrix(values)
        if bias is None:
            yt = torch.sparse.mm(w, x2.t())
        else:
            yt = torch.addmm(bias.unsqueeze(1), w, x2.t())
        ctx.save_for_backward(x2, values)
        ctx.layout, ctx.layer, ctx.x_shape = layout, layer, x.shape
        return yt.t().reshape(*x.shape[:-1], layout.n_out)

    @staticmethod
    def backward(ctx, gy):
        x2, values = ctx.saved_tensors
        layout = ctx.layout
        gyt = gy.reshape(-1, layout.n_out).t()
        gx = gv = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.sparse.mm(layout.matrix_t(values), gyt).t().reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            layer = ctx.layer
            if layer is not None and layer.capture_dense_grad:
                dense = gyt @ x2
                layer.store_dense_grad(dense)
                gv = layout.gather(dense)
            else:
                gv = torch.sparse.sampled_addmm(layout.pattern, gyt, x2, beta=0.0).values()
        if ctx.needs_input_grad[2]:
            gb = gyt.sum(1)
        return gx, gv, gb, None, None


def csr_linear(x: torch.Tensor, values: torch.Tensor, bias: Optional[torch.Tensor], layout: CsrLayout,
               layer: Optional["SparseLinear"] = None) -> torch.Tensor:
    """Functional form: ``x W^T + b`` through the CSR kernels (``layer`` receives the dense
    weight gradient when its ``capture_dense_grad`` is set)."""
    return _CsrLinear.apply(x, values, bias, layout, layer)


class SparseLinear(nn.Linear):
    """A Linear layer whose weight is stored compressed (see the module docstring).

    Parameters, in order: ``values`` (active weights, trainable) and ``bias`` (the original
    layer's Parameter object, so an optimizer holding it stays valid).  ``weight`` is a
    read-only dense view for inspection (FLOP counting, export).

    ``residual``: dense weights at positions *outside* the layout, normally ``None``.  A target
    network keeps, until its next sync, the weights the online network just dropped (the masked
    backend does the same: its target still holds them until the mask is re-applied), and a
    freshly loaded state dict may hold weights outside the current layout until the owner
    re-lays the layer out with the loaded mask.  While it is set the layer computes densely.
    """

    def __init__(self, layout: CsrLayout, values: torch.Tensor, bias: Optional[nn.Parameter],
                 execution: "CsrExecution", requires_grad: bool = True):
        nn.Module.__init__(self)
        self.in_features, self.out_features = layout.n_in, layout.n_out
        self.values = nn.Parameter(values.detach().clone(), requires_grad=requires_grad)
        self.register_parameter("bias", bias)
        self.layout = layout
        self.execution = execution
        self.residual: Optional[torch.Tensor] = None
        self.capture_dense_grad = False
        self.dense_weight_grad: Optional[torch.Tensor] = None
        self._path_cache: dict = {}

    @classmethod
    def from_linear(cls, linear: nn.Linear, mask: torch.Tensor, execution: "CsrExecution",
                    layout: Optional[CsrLayout] = None) -> "SparseLinear":
        """Compress ``linear`` at ``mask`` (weights outside the mask are dropped)."""
        layout = CsrLayout(mask) if layout is None else layout
        with torch.no_grad():
            values = layout.gather(linear.weight.detach())
        return cls(layout, values, linear.bias, execution, requires_grad=linear.weight.requires_grad)

    # -------------------------------------------------------------------------- weights
    @property
    def weight(self) -> torch.Tensor:
        """Dense reconstruction (detached): zeros at inactive positions, plus ``residual``."""
        with torch.no_grad():
            return self._dense(self.values.detach())

    def _dense(self, values: torch.Tensor) -> torch.Tensor:
        dense = self.layout.to_dense(values)
        return dense if self.residual is None else dense + self.residual

    def store_dense_grad(self, grad: torch.Tensor) -> None:
        """Receive the dense weight gradient (summed like ``.grad`` if called twice)."""
        grad = grad.detach()
        self.dense_weight_grad = grad.clone() if self.dense_weight_grad is None else self.dense_weight_grad + grad

    @torch.no_grad()
    def set_layout(self, layout: CsrLayout, dense: Optional[torch.Tensor] = None) -> None:
        """Re-lay the layer out on ``layout``: values are read from ``dense`` (default: the
        current dense weight, residual included); weights outside the new layout that are
        non-zero stay in ``residual``.  ``values`` keeps its Parameter object (nnz of a layer
        never changes in dynamic sparse training; a different nnz resizes it in place)."""
        dense = self.weight if dense is None else dense.detach()
        new_values = layout.gather(dense)
        if new_values.shape != self.values.shape:
            self.values.data = new_values.clone()
        else:
            self.values.copy_(new_values)
        outside = dense.clone()
        outside.view(-1)[layout.flat] = 0
        self.residual = outside if bool(outside.any()) else None
        self.layout = layout
        self._path_cache.clear()

    def clear_residual(self) -> None:
        self.residual = None

    # -------------------------------------------------------------------------- compute
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual is None and self._sparse_path(x):
            return csr_linear(x, self.values, self.bias, self.layout, self)
        weight = self._dense(self.values)
        if self.capture_dense_grad and weight.requires_grad:
            weight.register_hook(self.store_dense_grad)
        return F.linear(x, weight, self.bias)

    def _sparse_path(self, x: torch.Tensor) -> bool:
        training = torch.is_grad_enabled() and (self.values.requires_grad or x.requires_grad)
        batch = x.numel() // max(self.in_features, 1)
        key = (batch, training)
        choice = self._path_cache.get(key)
        if choice is None:
            choice = self._path_cache[key] = self.execution.use_sparse_kernel(self.layout, batch, training)
        return choice

    # ------------------------------------------------------------------------ state dict
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """Like ``nn.Linear``: a dense ``weight`` (zeros at inactive positions) and ``bias``, so
        a checkpoint does not depend on the execution backend and loads into a plain Linear."""
        destination[prefix + "weight"] = self.weight
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        """Accept a dense ``weight``: values are gathered at the current layout and any
        non-zero weight outside it is kept in ``residual`` until the owner re-lays the layer
        out (``SparseTraining.load_state_dict`` does, with the loaded mask)."""
        for key in [k for k in state_dict if k.startswith(prefix)]:
            local = key[len(prefix):]
            if local not in ("weight", "bias") and strict:
                unexpected_keys.append(key)
        wkey, bkey = prefix + "weight", prefix + "bias"
        if wkey in state_dict:
            dense = state_dict[wkey]
            if tuple(dense.shape) != (self.out_features, self.in_features):
                error_msgs.append(f"size mismatch for {wkey}: copying a param with shape {tuple(dense.shape)}, "
                                  f"the shape in current model is {(self.out_features, self.in_features)}.")
            else:
                self.set_layout(self.layout, dense.to(self.values.dtype))
        elif strict:
            missing_keys.append(wkey)
        if self.bias is not None:
            if bkey in state_dict:
                with torch.no_grad():
                    self.bias.copy_(state_dict[bkey])
            elif strict:
                missing_keys.append(bkey)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, nnz={self.layout.nnz}, backend={self.execution.name}")


class CsrExecution(SparseExecution):
    """CSR backend: sparse layers are compressed into :class:`SparseLinear` and always run
    the sparse kernels.  Used through ``SparseTraining(backend="csr")``.

    Also usable through the inference seam :func:`~sparserl.sparse.masks.attach_execution`
    on a masked network: :meth:`linear` then compresses ``weight * mask`` (cached until the
    weight or mask changes) and runs the CSR forward; when a weight gradient is required it
    computes densely, so training code still sees dense ``weight.grad``.
    """

    name = "csr"
    compresses_layers = True

    def __init__(self):
        self._cache: dict = {}

    def compresses(self, shape: tuple[int, int], nnz: int) -> bool:
        """Whether a layer of this shape and non-zero count becomes a :class:`SparseLinear`.
        Fully dense layers never do (nothing to skip; they also need no masking)."""
        return nnz < shape[0] * shape[1]

    def use_sparse_kernel(self, layout: CsrLayout, batch: int, training: bool) -> bool:
        return True

    def linear(self, x, weight, bias, mask):
        if torch.is_grad_enabled() and weight.requires_grad:
            return F.linear(x, weight, bias)
        key = id(weight)
        version = (weight._version, mask._version, mask.data_ptr())
        cached = self._cache.get(key)
        if cached is None or cached[0] != version:
            layout = CsrLayout(mask)
            cached = self._cache[key] = (version, layout, layout.gather(weight.detach()))
        _, layout, values = cached
        return csr_linear(x, values, bias, layout)

    def __deepcopy__(self, memo):  # a strategy object: deep-copied layers share it
        return self


class AutoExecution(CsrExecution):
    """``auto`` backend: compress a layer only where the CSR kernels are faster on this machine.

    A layer is compressed when its density is at or below the measured crossover for its
    shape at ``reference_batch`` (training: forward + both gradients); a compressed layer then
    picks per call, by batch size and whether gradients are needed, between the sparse kernels
    and a dense matmul on its reconstructed weight (acting at batch 1 usually goes dense).
    Layers denser than ``max_density`` are never compressed and never measured.
    """

    name = "auto"

    def __init__(self, crossover=None, reference_batch: int = 256, max_density: float = 0.5):
        super().__init__()
        self._crossover = crossover
        self.reference_batch = int(reference_batch)
        self.max_density = float(max_density)

    @property
    def crossover(self):
        if self._crossover is None:
            from .crossover import default_crossover
            self._crossover = default_crossover()
        return self._crossover

    def compresses(self, shape, nnz):
        density = nnz / (shape[0] * shape[1])
        if density >= 1.0 or density > self.max_density:
            return False
        return density <= self.crossover.density(shape[0], shape[1], self.reference_batch, True)

    def use_sparse_kernel(self, layout, batch, training):
        return layout.density <= self.crossover.density(layout.n_out, layout.n_in, batch, training)
