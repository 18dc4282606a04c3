"""Masks on ``nn.Linear`` weights of any module, and the sparse-execution seam.

Conventions
-----------
* A mask is a ``bool`` tensor shaped like the weight; ``True`` = active connection.
* Masks are keyed by the weight's parameter name as given by ``module.named_parameters()``
  (e.g. ``"layers.0.weight"``), so a target network built with ``copy.deepcopy`` (same layer
  names) can be synced with the online network's masks.
* Masked weights are stored as exact zeros (``+0.0``) and the ordinary dense forward runs on
  the full weight matrix. Hence ``weight.grad`` after ``backward()`` is the dense gradient
  dL/dW, which RigL needs; gradients are masked afterwards, before the optimizer step.
"""
from __future__ import annotations

import types
from typing import Iterable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Masks = Mapping[str, torch.Tensor]

INITS = ("magnitude", "random")


# ----------------------------------------------------------------------------- discovery
def linear_weight_names(module: nn.Module, layers: Optional[Sequence[str]] = None) -> list[str]:
    """Parameter names of the ``nn.Linear`` weights to mask, in ``named_modules()`` order.

    ``layers`` (optional) restricts to the given module names (``"layers.0"``); the weight
    name (``"layers.0.weight"``) is accepted too. Unknown or non-Linear names raise ``ValueError``.
    """
    linears = {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    if layers is None:
        names = list(linears)
    else:
        if isinstance(layers, str):
            layers = [layers]
        names = []
        for given in layers:
            name = given[: -len(".weight")] if given.endswith(".weight") else given
            if name not in linears:
                raise ValueError(
                    f"layer {given!r} is not an nn.Linear of the module; allowed: {sorted(linears)}")
            if name not in names:
                names.append(name)
        order = list(linears)
        names.sort(key=order.index)
    if not names:
        raise ValueError("module has no nn.Linear layer to sparsify; need at least one nn.Linear")
    return [f"{n}.weight" if n else "weight" for n in names]


def _owner(module: nn.Module, weight_name: str) -> nn.Module:
    prefix = weight_name.rsplit(".", 1)[0] if "." in weight_name else ""
    return module.get_submodule(prefix) if prefix else module


def get_weights(module: nn.Module, names: Iterable[str]) -> dict[str, nn.Parameter]:
    """``{name: Parameter}`` for the given weight names; ``ValueError`` if one is missing."""
    params = dict(module.named_parameters())
    out = {}
    for n in names:
        if n not in params:
            raise ValueError(f"module has no parameter {n!r}; it must have the same layer names as the masks")
        out[n] = params[n]
    return out


def weight_shapes(module: nn.Module, names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """``{name: (n_out, n_in)}`` of the given weights."""
    return {n: tuple(p.shape) for n, p in get_weights(module, names).items()}


# ------------------------------------------------------------------------------ creation
def create_masks(module: nn.Module, counts: Mapping[str, int], init: str = "magnitude",
                 generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
    """One mask per weight with exactly ``counts[name]`` active entries.

    ``init="magnitude"`` keeps the largest-|w| entries of the current (fresh) weights;
    ``init="random"`` keeps a uniformly random subset drawn with ``generator``.
    """
    if init not in INITS:
        raise ValueError(f"unknown mask init {init!r}; allowed: {', '.join(INITS)}")
    weights = get_weights(module, counts)
    masks = {}
    for name, w in weights.items():
        k = int(counts[name])
        if not 0 <= k <= w.numel():
            raise ValueError(f"non-zero count {k} for {name!r} is outside 0..{w.numel()}")
        flat = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
        if init == "magnitude":
            idx = torch.topk(w.detach().abs().flatten(), k, sorted=False).indices
        else:
            idx = torch.randperm(w.numel(), generator=generator)[:k].to(w.device)
        flat[idx] = True
        masks[name] = flat.view_as(w)
    return masks


# -------------------------------------------------------------------------- enforcement
@torch.no_grad()
def apply_masks(module: nn.Module, masks: Masks) -> None:
    """Set the masked-out weights to exact ``+0.0`` (in place, same Parameter objects).

    Also refreshes the mask a layer's attached execution backend sees (see
    :func:`attach_execution`), so target networks stay consistent after :func:`sync_masks`.
    """
    for name, p in get_weights(module, masks).items():
        mask = masks[name]
        if mask.shape != p.shape:
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)} but the weight has {tuple(p.shape)}")
        p.masked_fill_(~mask.to(p.device), 0.0)
        owner = _owner(module, name)
        attached = getattr(owner, "_sparserl_mask", None)
        if attached is not None and attached is not mask:
            attached.copy_(mask)


@torch.no_grad()
def mask_gradients(module: nn.Module, masks: Masks) -> None:
    """Zero the gradients of masked-out weights (no-op for weights without ``.grad``)."""
    for name, p in get_weights(module, masks).items():
        if p.grad is not None:
            p.grad.masked_fill_(~masks[name].to(p.grad.device), 0.0)


def sync_masks(target: nn.Module, masks: Masks) -> None:
    """Give a target network (same layer names) the online network's zero pattern.

    Call after every soft (Polyak) or hard target update: averaging with the online weights
    keeps zeros only where both are zero, and after a topology change the target still
    holds weights at dropped positions.
    """
    apply_masks(target, masks)


def count_active(masks: Masks) -> dict[str, int]:
    return {n: int(m.sum()) for n, m in masks.items()}


# ----------------------------------------------------------------------- execution seam
class SparseExecution:
    """THE seam for how a masked Linear layer computes ``y = x @ W.T + b``.

    Two ways a backend is used:

    * by ``SparseTraining(backend=...)``: :meth:`compresses` says, per layer, whether the
      layer is replaced by a compressed module that trains only its active weights
      (:class:`~sparserl.sparse.csr.CsrExecution`, ``AutoExecution``); this default says no,
      so layers stay ``nn.Linear`` with masked dense weights ("masked" backend);
    * by :func:`attach_execution` (inference seam on a masked network): ``linear(x, weight,
      bias, mask)`` receives the full weight (masked entries are exact zeros) and the layer's
      current bool mask. This default is a dense matmul on the masked weight, identical to
      ``nn.Linear.forward``; a backend must keep producing dense ``weight.grad`` when a weight
      gradient is required (training code relies on it).

    Nothing in allocation, updaters or schedules depends on the backend.
    """

    name = "masked"
    #: whether :meth:`compresses` can ever be True (backends that own the optimizer state)
    compresses_layers = False

    def compresses(self, shape: tuple[int, int], nnz: int) -> bool:
        """Whether ``SparseTraining`` replaces a layer of this shape / non-zero count by a
        compressed module (False: it stays an ``nn.Linear`` with a masked dense weight)."""
        return False

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
               mask: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight, bias)


DENSE_MASKED = SparseExecution()


def _sparse_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return self._sparserl_execution.linear(x, self.weight, self.bias, self._sparserl_mask)


def attach_execution(module: nn.Module, masks: Masks, execution: SparseExecution = DENSE_MASKED) -> None:
    """Route every masked ``nn.Linear`` of ``module`` through ``execution.linear``.

    The layer keeps its parameters and names (optimizer and state_dict unaffected); only its
    instance ``forward`` is replaced by a bound method, which ``copy.deepcopy`` rebinds to the
    copy, so a deep-copied target runs its own weights. The layer holds the mask tensor from
    ``masks`` itself (updaters change masks in place); copies are refreshed by
    :func:`apply_masks` / :func:`sync_masks`.
    """
    for name in masks:
        layer = _owner(module, name)
        if not isinstance(layer, nn.Linear) or not name.endswith("weight"):
            raise ValueError(f"{name!r} is not the weight of an nn.Linear; execution backends apply to Linear layers")
        layer._sparserl_execution = execution
        layer._sparserl_mask = masks[name]
        layer.forward = types.MethodType(_sparse_forward, layer)


def detach_execution(module: nn.Module) -> None:
    """Undo :func:`attach_execution` (layers go back to ``nn.Linear.forward``)."""
    for layer in module.modules():
        if hasattr(layer, "_sparserl_execution"):
            del layer._sparserl_execution
            del layer._sparserl_mask
            del layer.forward
