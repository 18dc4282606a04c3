"""Compressed execution of masked Linear layers: CSR kernels for forward and both gradients.

Why: a masked layer stores its weight dense and multiplies it whole, so a 98%-sparse network
costs as much time as a dense one.  Here a layer keeps only its active weights, ``values``
(one entry per True of the mask, row-major order), and the index structure of the mask
(:class:`CsrLayout`).  Per call:

* forward ``y = x W^T + b`` is a CSR x dense product (``torch.addmm`` with a sparse CSR
  matrix; MKL on CPU), computed as ``(W x^T)^T`` so that activations stay *feature-major*
  (``x^T`` contiguous), the layout the kernels read fastest (see :class:`_CsrLinear`);
* the input gradient ``gx = gy W`` is a CSR x dense product with the transposed structure
  (kept alongside, its values are a permutation of ``values``);
* the weight gradient is computed *only at the non-zero positions* as a sampled dense-dense
  product (``torch.sparse.sampled_addmm``: for each active (i, j), ``sum_b gy[b, i] x[b, j]``),
  so no dense weight gradient is ever materialised ...
* ... except when the layer is asked to (its :class:`DenseGradRequest` is active): RigL grows
  connections by the dense gradient on topology-update steps, so on those steps the backward
  computes ``gy^T x`` densely, keeps it (``dense_weight_grad``) and gathers the values'
  gradient from it.

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

import types
import warnings
import weakref
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .masks import SparseExecution


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
        with warnings.catch_warnings():  # torch warns once that CSR support is "beta"; these calls are stable
            warnings.simplefilter("ignore")
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


def block_diagonal(layouts) -> CsrLayout:
    """The layout of ``diag(W_1, ..., W_K)`` (shape ``(K n_out, K n_in)`` for K layouts of one
    shape): its row-major entries are the layouts' entries in order, so its values are
    ``torch.cat`` of theirs. Why: K small sparse products as one kernel call cost far less fixed
    overhead than K calls (several networks trained side by side, e.g. many seeds at once)."""
    layouts = list(layouts)
    if not layouts or any(l.shape != layouts[0].shape for l in layouts):
        raise ValueError(f"block_diagonal needs layouts of one shape, got {[l.shape for l in layouts]}")
    return CsrLayout(torch.block_diag(*[l.mask() for l in layouts]))


def _row_pointers(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    pointers = torch.zeros(n_rows + 1, dtype=torch.int64)
    pointers[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return pointers


class DenseGradRequest:
    """Whether the next backward of some compressed layers must produce the dense weight
    gradient.  One object is shared by all layers of a ``SparseTraining`` so that arming
    them for a topology-update step is one attribute write, not one per layer."""

    __slots__ = ("active",)

    def __init__(self, active: bool = False):
        self.active = active


class CsrOperand:
    """What the kernels need of one compressed weight: its layout, the CSR tensors of ``W``
    and ``W^T`` for the current values (cached per values version: ``W`` shares the values'
    storage, ``W^T`` is a permuted copy rebuilt only after the values change), the dense
    gradient request and, when requested, the dense gradient itself."""

    __slots__ = ("layout", "request", "dense_grad", "_w", "_wt")

    def __init__(self, layout: CsrLayout, request: Optional[DenseGradRequest] = None):
        self.layout = layout
        self.request = DenseGradRequest() if request is None else request
        self.dense_grad: Optional[torch.Tensor] = None
        self._w = self._wt = (None, None)

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        # W holds the values' storage itself, so in-place updates (optimizer, Polyak) show
        # through; it is rebuilt only for another tensor or another layout.
        key = (values.data_ptr(), values.shape[0], id(self.layout))
        if self._w[0] != key:
            self._w = (key, self.layout.matrix(values.detach()))
        return self._w[1]

    def matrix_t(self, values: torch.Tensor) -> torch.Tensor:
        key = (values.data_ptr(), values._version, values.shape[0], id(self.layout))
        if self._wt[0] != key:
            self._wt = (key, self.layout.matrix_t(values.detach()))
        return self._wt[1]

    def store_dense_grad(self, grad: torch.Tensor) -> None:
        """Receive the dense weight gradient (summed like ``.grad`` if called twice)."""
        grad = grad.detach()
        self.dense_grad = grad.clone() if self.dense_grad is None else self.dense_grad + grad


def _forward_t(x: torch.Tensor, w: torch.Tensor, bias: Optional[torch.Tensor], n_in: int):
    """``(W x^T + b, x^T)`` with ``x^T`` made contiguous (MKL's fast layout) if it is not."""
    xt = x.reshape(-1, n_in).t()
    if not xt.is_contiguous():
        xt = xt.contiguous()
    yt = torch.sparse.mm(w, xt) if bias is None else torch.addmm(bias.unsqueeze(1), w, xt)
    return yt, xt


def _output(yt: torch.Tensor, x: torch.Tensor, n_out: int) -> torch.Tensor:
    return yt.t() if x.dim() == 2 else yt.t().reshape(*x.shape[:-1], n_out)


class _CsrLinear(torch.autograd.Function):
    """``y = x W^T + b`` with ``W`` given by a :class:`CsrOperand` and ``values``.

    Layout: MKL's CSR x dense product and ``sampled_addmm`` are fastest (2-3x) when the dense
    operands are *feature-major* (``x^T`` contiguous), so inputs are transposed once if they
    are not, outputs are returned feature-major (``y`` with strides ``(1, batch)``), and
    gradients are too; consecutive layers then never copy (see :func:`feature_major_linear`).
    """

    @staticmethod
    def forward(ctx, x, values, bias, op: CsrOperand):
        yt, xt = _forward_t(x, op.matrix(values), bias, op.layout.n_in)
        ctx.save_for_backward(xt, values)
        ctx.op, ctx.x_shape = op, x.shape
        return _output(yt, x, op.layout.n_out)

    @staticmethod
    def backward(ctx, gy):
        xt, values = ctx.saved_tensors
        op = ctx.op
        layout = op.layout
        gyt = gy.reshape(-1, layout.n_out).t()
        if not gyt.is_contiguous():
            gyt = gyt.contiguous()
        gx = gv = gb = None
        if ctx.needs_input_grad[0]:
            # beta=0 on an uninitialised result: torch.addmm ignores the input then (documented),
            # which saves the zero-fill and copy that torch.sparse.mm does first.
            gx = gyt.new_empty((layout.n_in, gyt.shape[1])).addmm_(op.matrix_t(values), gyt, beta=0).t()
            if len(ctx.x_shape) != 2:
                gx = gx.reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            if op.request.active:
                dense = gyt @ xt.t()
                op.store_dense_grad(dense)
                gv = layout.gather(dense)
            else:
                gv = torch.sparse.sampled_addmm(layout.pattern, gyt, xt.t(), beta=0.0).values()
        if ctx.needs_input_grad[2]:
            gb = gyt.sum(1)
        return gx, gv, gb, None


def csr_linear(x: torch.Tensor, values: torch.Tensor, bias: Optional[torch.Tensor],
               operand: "CsrOperand | CsrLayout") -> torch.Tensor:
    """Functional form: ``x W^T + b`` through the CSR kernels, differentiable w.r.t. ``x``,
    ``values`` and ``bias``; ``operand`` is a :class:`CsrOperand` (caches, dense-gradient
    request) or a bare :class:`CsrLayout`.  Without gradients it skips autograd entirely."""
    op = operand if isinstance(operand, CsrOperand) else CsrOperand(operand)
    if torch.is_grad_enabled() and (x.requires_grad or values.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _CsrLinear.apply(x, values, bias, op)
    return _output(_forward_t(x, op.matrix(values), bias, op.layout.n_in)[0], x, op.layout.n_out)


def feature_major_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed as ``(W x^T + b)^T`` (plain autograd ops).

    Why: the CSR layers return feature-major activations.  A dense layer in the same chain
    computed by ``F.linear`` would hand back a row-major input gradient, and the ReLU between
    them then runs its backward on operands of different layouts, which is far slower than
    on matching ones (measured 0.9 ms instead of 12 us for 256x256 on a loaded machine).
    Computing dense layers feature-major too keeps every activation and gradient of the chain
    in one layout; the BLAS reads the transposed operands without copies.
    """
    x2 = x.reshape(-1, weight.shape[1])
    yt = weight @ x2.t() if bias is None else torch.addmm(bias.unsqueeze(1), weight, x2.t())
    return yt.t() if x.dim() == 2 else yt.t().reshape(*x.shape[:-1], weight.shape[0])


def _feature_major_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return feature_major_linear(x, self.weight, self.bias)


def use_feature_major(layer: nn.Linear) -> None:
    """Make a plain (masked or dense) ``nn.Linear`` compute feature-major, to chain with CSR
    layers without layout changes (instance ``forward``; ``copy.deepcopy`` rebinds it)."""
    if type(layer) is nn.Linear and "forward" not in layer.__dict__:
        layer.forward = types.MethodType(_feature_major_forward, layer)


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
        self.operand = CsrOperand(layout)
        self.execution = execution
        self.residual: Optional[torch.Tensor] = None
        self._path_cache: dict = {}
        self._inference_weight: dict = {}  # key -> dense weight for gradient-free dense calls

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
    def layout(self) -> CsrLayout:
        return self.operand.layout

    @property
    def capture_dense_grad(self) -> bool:
        """Whether the next backward also computes the dense weight gradient (RigL steps)."""
        return self.operand.request.active

    @property
    def dense_weight_grad(self) -> Optional[torch.Tensor]:
        """The dense weight gradient of the last backward that was asked for it, else None."""
        return self.operand.dense_grad

    @property
    def weight(self) -> torch.Tensor:
        """Dense reconstruction (detached): zeros at inactive positions, plus ``residual``."""
        with torch.no_grad():
            return self._dense(self.values.detach())

    def _dense(self, values: torch.Tensor) -> torch.Tensor:
        dense = self.layout.to_dense(values)
        return dense if self.residual is None else dense + self.residual

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
        self.operand.layout = layout
        self._path_cache.clear()

    def clear_residual(self) -> None:
        if self.residual is not None:
            self.residual = None

    # -------------------------------------------------------------------------- compute
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = self._parameters  # direct access: nn.Module.__getattr__ costs ~1 us per lookup
        values, bias = params["values"], params["bias"]
        if self.residual is None and (self.execution.always_sparse or self._sparse_path(x, values)):
            return csr_linear(x, values, bias, self.operand)
        if torch.is_grad_enabled() and (values.requires_grad or x.requires_grad):
            weight = self._dense(values)
            if self.operand.request.active and weight.requires_grad:
                weight.register_hook(self.operand.store_dense_grad)
        else:
            weight = self._inference_dense(values)
        return feature_major_linear(x, weight, bias)

    def _inference_dense(self, values: torch.Tensor) -> torch.Tensor:
        """The dense weight for gradient-free dense calls (e.g. acting at batch 1 under
        ``auto``), rebuilt only after the values change: evaluation episodes and the env steps
        between two policy updates reuse it instead of scattering the values every call."""
        if self.residual is not None:
            return self._dense(values.detach())
        key = (values.data_ptr(), values._version, id(self.layout))
        cached = self._inference_weight.get("w")
        if cached is None or cached[0] != key:
            cached = self._inference_weight["w"] = (key, self.layout.to_dense(values.detach()))
        return cached[1]

    def _sparse_path(self, x: torch.Tensor, values: torch.Tensor) -> bool:
        training = torch.is_grad_enabled() and (values.requires_grad or x.requires_grad)
        key = (x.numel() // self.in_features, training)
        choice = self._path_cache.get(key)
        if choice is None:
            choice = self._path_cache[key] = self.execution.use_sparse_kernel(self.layout, key[0], training)
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
    #: compressed layers always run the sparse kernels (no per-call choice)
    always_sparse = True

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
        # Keyed by id(weight), but an id is reused once its tensor is freed (a rebuilt target
        # network's fresh weights can land on the same id, version and mask address), so an entry
        # is valid only while its weak reference still points at this very tensor.
        key = id(weight)
        version = (weight.data_ptr(), weight._version, mask.data_ptr(), mask._version)
        cached = self._cache.get(key)
        if cached is None or cached[0]() is not weight or cached[1] != version:
            if len(self._cache) > 64:  # drop the entries of freed weights
                self._cache = {k: v for k, v in self._cache.items() if v[0]() is not None}
            layout = CsrLayout(mask)
            cached = self._cache[key] = (weakref.ref(weight), version, CsrOperand(layout),
                                         layout.gather(weight.detach()))
        _, _, operand, values = cached
        return csr_linear(x, values, bias, operand)

    def __deepcopy__(self, memo):  # a strategy object: deep-copied layers share it
        return self
