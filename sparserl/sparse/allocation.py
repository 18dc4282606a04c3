"""Layer-wise density allocation: uniform and Erdos-Renyi-Kernel (ERK) with dense fallback.

Shapes are given as ``{name: (n_out, n_in)}`` (the layout of ``nn.Linear.weight``).

ERK: the density of layer ``l`` is ``eps * (n_in + n_out) / (n_in * n_out)`` with one global
``eps`` chosen so that the total number of non-zeros equals the global target exactly. A layer
whose density would exceed 1 is made dense and ``eps`` is re-solved for the remaining layers;
this repeats until no layer exceeds 1 (making a layer dense can only raise ``eps``, so the
loop terminates after at most ``len(shapes)`` rounds).

Integer counts (:func:`layer_nonzero_counts`) distribute rounding with the largest-remainder
rule so that ``sum(counts) == round(global_density * total_weights)`` exactly (Python's
``round``) and no layer exceeds its size. A layer rounded to 0 weights gets 1, taken from the
layer with the most weights; a target below one weight per layer raises ``ValueError``.
"""
from __future__ import annotations

import math
from typing import Mapping

ALLOCATIONS = ("erk", "uniform")
METHODS = ALLOCATIONS  # the older name, kept importable

Shapes = Mapping[str, "tuple[int, int]"]


def _check(shapes: Shapes, sparsity: float, method: str) -> None:
    if method not in ALLOCATIONS:
        raise ValueError(f"unknown allocation method {method!r}; allowed: {', '.join(ALLOCATIONS)}")
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise ValueError(f"sparsity {sparsity!r} is not a number; allowed: 0 <= sparsity < 1") from None
    if not (0.0 <= s < 1.0) or math.isnan(s):
        raise ValueError(f"sparsity {sparsity!r} is outside the allowed range 0 <= sparsity < 1")
    if not shapes:
        raise ValueError("no layers to allocate (empty shapes); need at least one (n_out, n_in) layer")
    for name, shape in shapes.items():
        if len(shape) != 2 or int(shape[0]) <= 0 or int(shape[1]) <= 0:
            raise ValueError(f"layer {name!r} has shape {tuple(shape)!r}; expected (n_out, n_in) with positive sizes")


def _target_nonzeros(shapes: Shapes, sparsity: float) -> int:
    total = sum(int(o) * int(i) for o, i in shapes.values())
    return int(round((1.0 - float(sparsity)) * total))


def layer_densities(shapes: Shapes, sparsity: float, method: str = "erk") -> dict[str, float]:
    """Real-valued per-layer densities (fraction of weights kept) meeting the global target.

    ``sum(d[l] * size[l]) == round((1 - sparsity) * total)`` up to float error.
    """
    _check(shapes, sparsity, method)
    sizes = {n: int(o) * int(i) for n, (o, i) in shapes.items()}
    target = _target_nonzeros(shapes, sparsity)
    if method == "uniform":
        total = sum(sizes.values())
        return {n: target / total for n in shapes}

    raw = {n: (int(i) + int(o)) / (int(i) * int(o)) for n, (o, i) in shapes.items()}
    dense: set[str] = set()
    while True:
        budget = target - sum(sizes[n] for n in dense)
        rest = [n for n in shapes if n not in dense]
        if not rest:  # every layer dense: only possible when the target is the full size
            return {n: 1.0 for n in shapes}
        eps = budget / sum(raw[n] * sizes[n] for n in rest)
        over = [n for n in rest if eps * raw[n] > 1.0]
        if not over:
            out = {n: 1.0 for n in dense}
            out.update({n: eps * raw[n] for n in rest})
            return {n: out[n] for n in shapes}
        dense.update(over)


def layer_nonzero_counts(shapes: Shapes, sparsity: float, method: str = "erk") -> dict[str, int]:
    """Exact integer non-zero counts per layer; they sum to ``round((1 - sparsity) * total)``.

    Raises ``ValueError`` if the target is smaller than one weight per layer.
    """
    densities = layer_densities(shapes, sparsity, method)
    sizes = {n: int(o) * int(i) for n, (o, i) in shapes.items()}
    target = _target_nonzeros(shapes, sparsity)
    exact = {n: min(densities[n] * sizes[n], sizes[n]) for n in shapes}
    counts = {n: min(int(math.floor(x + 1e-9)), sizes[n]) for n, x in exact.items()}
    missing = target - sum(counts.values())
    # largest remainder first; ties broken by layer order (deterministic)
    order = sorted(shapes, key=lambda n: -(exact[n] - counts[n]))
    for n in order:
        if missing <= 0:
            break
        if counts[n] < sizes[n]:
            counts[n] += 1
            missing -= 1
    while missing < 0:  # float noise pushed the floors above the target
        n = max((n for n in shapes if counts[n] > 0), key=lambda n: counts[n] - exact[n])
        counts[n] -= 1
        missing += 1
    if target < len(shapes):
        raise ValueError(
            f"sparsity {sparsity!r} keeps {target} weights for {len(shapes)} layers; "
            f"allowed: a sparsity that keeps at least one weight per layer")
    for n in shapes:  # a layer rounded to 0 gets one weight from the layer with the most
        if counts[n] < 1:
            donor = max(shapes, key=lambda m: counts[m])
            counts[donor] -= 1
            counts[n] = 1
    return counts


def global_density(counts: Mapping[str, int], shapes: Shapes) -> float:
    """Fraction of weights kept over all layers."""
    return sum(counts.values()) / sum(int(o) * int(i) for o, i in shapes.values())
