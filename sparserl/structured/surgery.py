"""Physical shrinking of hidden neurons in an MLP chain, and neuron masking.

An *MLP chain* is an ordered list of ``nn.Linear`` layers where the output of layer ``i``
goes through an element-wise activation and feeds layer ``i + 1``. Hidden neuron ``j`` of
hidden layer ``i`` (``0 <= i < len(chain) - 1``) owns row ``j`` of ``W_i``, entry ``j`` of
``b_i`` and column ``j`` of ``W_{i+1}``. Inputs of ``chain[0]`` and outputs of ``chain[-1]`` are
never touched.

:func:`shrink` removes neurons for real. The ``nn.Linear`` modules are modified *in place*
(their ``weight``/``bias`` Parameters are replaced and ``in_features``/``out_features``
updated), so references to the modules stay valid. Everything that depends on the old
Parameters follows the same indices:

* mirror chains (e.g. target networks with the same architecture) are shrunk identically;
* every given optimizer has its ``param_groups`` entries swapped for the new Parameters and its
  per-parameter state (``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``momentum_buffer``, ...)
  sliced by the same indices; scalar state such as ``step`` is carried over unchanged
  (:func:`sparserl.sparse.optim_state.swap_parameter`, shared with CSR compression);
* a pending ``.grad`` is sliced too.

:func:`apply_neuron_masks` is the non-destructive alternative: it zeroes the row, bias entry
and outgoing column of each masked neuron, so the neuron contributes exactly 0 to the next
layer (whatever ``f(0)`` is). Re-apply it after every optimizer step (the pruner does).
A shrunk network and its masked original compute the same function.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from ..sparse.optim_state import swap_parameter

__all__ = ["resolve_chain", "shrink", "apply_neuron_masks", "hidden_widths", "as_index", "split_mirror"]


def resolve_chain(owner) -> list[nn.Linear]:
    """Return the Linear chain of ``owner``: a module with ``linear_layers()`` or a sequence of
    ``nn.Linear``. Checks that consecutive layers have matching sizes."""
    if hasattr(owner, "linear_layers"):
        chain = list(owner.linear_layers())
    elif isinstance(owner, (list, tuple, nn.ModuleList, nn.Sequential)):
        chain = [m for m in owner]
    else:
        raise ValueError(
            f"chain owner {type(owner).__name__} is not supported; "
            "allowed: a module with linear_layers() or a list of nn.Linear")
    for layer in chain:
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"chain element {type(layer).__name__} is not nn.Linear; "
                             "allowed: nn.Linear only")
    if len(chain) < 2:
        raise ValueError(f"chain has {len(chain)} Linear layer(s); allowed: >= 2 (one hidden layer)")
    for a, b in zip(chain[:-1], chain[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"chain sizes do not match: out_features={a.out_features} "
                             f"feeds in_features={b.in_features}")
    return chain


def hidden_widths(chain: Sequence[nn.Linear]) -> list[int]:
    """Current widths of the hidden layers (outputs of ``chain[:-1]``)."""
    return [layer.out_features for layer in chain[:-1]]


def as_index(keep: torch.Tensor, width: int) -> torch.Tensor:
    """Turn a BoolTensor mask or an index tensor into a sorted, unique LongTensor of indices."""
    keep = torch.as_tensor(keep)
    if keep.dtype == torch.bool:
        if keep.numel() != width:
            raise ValueError(f"keep mask has {keep.numel()} entries; allowed: {width} (layer width)")
        return torch.nonzero(keep.cpu(), as_tuple=False).flatten()
    idx = torch.unique(keep.cpu().long(), sorted=True)
    if idx.numel() and (idx[0] < 0 or idx[-1] >= width):
        raise ValueError(f"keep index out of range [{int(idx.min())}, {int(idx.max())}]; "
                         f"allowed: 0..{width - 1}")
    return idx


def split_mirror(mirror):
    """A mirror is an owner/chain or ``(owner, optimizer)``; return ``(chain, [optimizers])``."""
    if (isinstance(mirror, tuple) and len(mirror) == 2 and not isinstance(mirror[0], nn.Linear)):
        return resolve_chain(mirror[0]), _as_optimizers(mirror[1])
    return resolve_chain(mirror), []


def _as_optimizers(optimizer) -> list[torch.optim.Optimizer]:
    if optimizer is None:
        return []
    if isinstance(optimizer, torch.optim.Optimizer):
        return [optimizer]
    return [o for o in optimizer if o is not None]


@torch.no_grad()
def _slice_parameter(module: nn.Linear, name: str, dim: int, idx: torch.Tensor,
                     optimizers: Iterable[torch.optim.Optimizer]) -> None:
    """Replace ``module.<name>`` by its slice along ``dim``; optimizers follow."""
    old = getattr(module, name)
    if old is None:
        return
    index = idx.to(old.device)
    new = nn.Parameter(old.detach().index_select(dim, index).clone(),
                       requires_grad=old.requires_grad)
    if old.grad is not None:
        new.grad = old.grad.index_select(dim, index).clone()
    for opt in optimizers:
        swap_parameter(opt, old, new, lambda value: value.index_select(dim, index.to(value.device)).clone())
    setattr(module, name, new)


def shrink(chain, layer: int, keep, optimizer=None, mirrors: Sequence = ()) -> torch.Tensor:
    """Physically keep only the neurons ``keep`` of hidden layer ``layer``.

    Args:
        chain: the Linear chain (or a module with ``linear_layers()``).
        layer: hidden layer index, ``0 <= layer < len(chain) - 1``.
        keep: BoolTensor of length ``chain[layer].out_features`` or LongTensor of indices.
        optimizer: an optimizer, a list of optimizers, or None; their param_groups and state
            follow the new Parameters.
        mirrors: chains (or owners) with the same architecture shrunk by the same indices
            (e.g. target networks). A mirror may be given as ``(owner, optimizer)`` to carry
            its own optimizer along.
    Returns:
        the kept indices (sorted LongTensor, relative to the layer before shrinking).
    """
    chain = resolve_chain(chain)
    if not 0 <= layer < len(chain) - 1:
        raise ValueError(f"layer={layer} is not a hidden layer; allowed: 0..{len(chain) - 2}")
    width = chain[layer].out_features
    idx = as_index(keep, width)
    if idx.numel() == 0:
        raise ValueError("keep selects no neuron; allowed: at least 1 neuron per hidden layer")
    targets = [(chain, _as_optimizers(optimizer))] + [split_mirror(m) for m in mirrors]
    for c, _ in targets[1:]:
        if len(c) != len(chain) or c[layer].out_features != width:
            raise ValueError(f"mirror width {c[layer].out_features} at layer {layer} differs; "
                             f"allowed: same architecture as the chain (width {width})")
    for c, opts in targets:
        if idx.numel() == width:
            continue
        _slice_parameter(c[layer], "weight", 0, idx, opts)
        _slice_parameter(c[layer], "bias", 0, idx, opts)
        _slice_parameter(c[layer + 1], "weight", 1, idx, opts)
        c[layer].out_features = int(idx.numel())
        c[layer + 1].in_features = int(idx.numel())
    return idx


@torch.no_grad()
def apply_neuron_masks(chain, alive_masks: Sequence[torch.Tensor | None]) -> None:
    """Zero the row, bias entry and outgoing column of every masked hidden neuron.

    ``alive_masks[i]`` is a BoolTensor over the *current* width of hidden layer ``i`` (True =
    alive) or None (no mask). Masked neurons then output exactly 0 to the next layer.
    """
    chain = resolve_chain(chain)
    if len(alive_masks) != len(chain) - 1:
        raise ValueError(f"got {len(alive_masks)} masks; allowed: {len(chain) - 1} (one per hidden layer)")
    for i, mask in enumerate(alive_masks):
        if mask is None:
            continue
        if mask.numel() != chain[i].out_features:
            raise ValueError(f"mask {i} has {mask.numel()} entries; allowed: {chain[i].out_features}")
        dead = ~mask.to(torch.bool)
        if not bool(dead.any()):
            continue
        dead_w = dead.to(chain[i].weight.device)
        chain[i].weight[dead_w] = 0.0
        if chain[i].bias is not None:
            chain[i].bias[dead_w] = 0.0
        chain[i + 1].weight[:, dead.to(chain[i + 1].weight.device)] = 0.0
