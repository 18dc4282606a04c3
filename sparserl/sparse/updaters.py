"""Which connections change at a topology update (the *when / how many* is in schedules.py).

An updater works on one layer at a time: given the weight, its bool mask and the number of
connections to replace, it drops ``n`` active connections and grows ``n`` inactive ones, so
the layer's non-zero count never changes. It edits ``mask`` and ``weight`` in place:
dropped and grown weights are set to exactly 0 (grown connections start at 0, as in RigL).

Regrowth candidates are the connections that were inactive *before* the drop, i.e. a
connection dropped in this update is never regrown in the same update (equivalent to RigL's
explicit exclusion of just-dropped connections). If a layer has fewer inactive connections
than ``n`` (e.g. a dense ERK layer), ``n`` is capped at that number (0 for a dense layer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class LayerChange:
    """Bool tensors shaped like the weight marking what changed in one layer."""

    dropped: torch.Tensor
    grown: torch.Tensor

    @property
    def changed(self) -> torch.Tensor:
        return self.dropped | self.grown

    @property
    def n(self) -> int:
        return int(self.grown.sum())


class Updater:
    """Base class. Subclasses implement :meth:`grow_scores`."""

    name = "base"
    #: whether :meth:`update` needs the dense gradient of the weight
    needs_dense_grad = False

    def grow_scores(self, weight: torch.Tensor, grad: Optional[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def update(self, weight: torch.Tensor, mask: torch.Tensor, n: int,
               grad: Optional[torch.Tensor] = None) -> LayerChange:
        """Drop the ``n`` smallest-|w| active weights, grow ``n`` inactive ones (in place)."""
        if self.needs_dense_grad and grad is None:
            raise ValueError(f"{self.name} updater needs the dense gradient of the weight (grad=None given)")
        flat_mask = mask.view(-1)
        inactive_before = ~flat_mask
        n = max(0, min(int(n), int(flat_mask.sum()), int(inactive_before.sum())))
        dropped = torch.zeros_like(flat_mask)
        grown = torch.zeros_like(flat_mask)
        if n > 0:
            w = weight.detach().reshape(-1)
            drop_score = torch.where(flat_mask, w.abs(), torch.full_like(w, float("inf")))
            dropped[torch.topk(drop_score, n, largest=False, sorted=False).indices] = True
            scores = self.grow_scores(weight, grad).reshape(-1).to(w.device, torch.float32)
            scores = torch.where(inactive_before, scores, torch.full_like(scores, float("-inf")))
            grown[torch.topk(scores, n, largest=True, sorted=False).indices] = True
            flat_mask[dropped] = False
            flat_mask[grown] = True
            weight.view(-1)[dropped | grown] = 0.0
        return LayerChange(dropped.view_as(mask), grown.view_as(mask))


class StaticUpdater(Updater):
    """Fixed topology: never changes anything."""

    name = "static"

    @torch.no_grad()
    def update(self, weight, mask, n, grad=None) -> LayerChange:
        z = torch.zeros_like(mask)
        return LayerChange(z, z.clone())


class SETUpdater(Updater):
    """SET (Mocanu et al. 2018): grow uniformly at random among inactive connections."""

    name = "set"

    def __init__(self, generator: Optional[torch.Generator] = None):
        self.generator = generator

    def grow_scores(self, weight, grad):
        # i.i.d. uniform scores: the top-n of them is a uniformly random n-subset
        return torch.rand(weight.numel(), generator=self.generator).to(weight.device)


class RigLUpdater(Updater):
    """RigL (Evci et al. 2020): grow the inactive connections with largest |dense gradient|."""

    name = "rigl"
    needs_dense_grad = True

    def grow_scores(self, weight, grad):
        return grad.detach().abs()


UPDATERS = {"static": StaticUpdater, "set": SETUpdater, "rigl": RigLUpdater}


def make_updater(spec, generator: Optional[torch.Generator] = None) -> Updater:
    """An updater from a name (``"static"``, ``"set"``, ``"rigl"``) or an :class:`Updater` instance."""
    if isinstance(spec, Updater):
        return spec
    if spec == "set":
        return SETUpdater(generator)
    if spec in UPDATERS:
        return UPDATERS[spec]()
    raise ValueError(f"unknown updater {spec!r}; allowed: {', '.join(UPDATERS)} or an Updater instance")
