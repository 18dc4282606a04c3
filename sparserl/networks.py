"""MLP builders that expose their Linear layer chain.

Every network is a plain chain ``Linear -> act -> Linear -> ... -> Linear`` so that the
sparse core (unstructured masks) and the structured pruner (neuron surgery) can see and
replace every Linear layer and know which ones are input, hidden and output layers.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """A chain of Linear layers with one element-wise activation between them."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        dims = [int(in_dim), *[int(h) for h in hidden], int(out_dim)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.activation = nn.ReLU()

    def linear_layers(self) -> list[nn.Linear]:
        """The chain in forward order: index 0 is the input layer, -1 the output layer."""
        return list(self.layers)

    @property
    def hidden_sizes(self) -> list[int]:
        return [layer.out_features for layer in self.layers[:-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):  # (slicing a ModuleList builds a new one per call)
            x = layer(x)
            if i < last:
                x = self.activation(x)
        return x


WEIGHT_INITS = ("default", "orthogonal")


@torch.no_grad()
def init_weights_(module: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialise every Linear layer of ``module`` in place; returns ``module``.

    ``"default"`` keeps PyTorch's init (Kaiming-uniform weights and uniform biases, both
    scaled by 1/sqrt(fan_in)).  ``"orthogonal"`` gives each weight matrix orthonormal rows or
    columns (gain 1) and zero biases, the init of the RLx2 reference's SAC networks; its
    outputs start at a visibly different scale than the default init's, which matters once a
    mask keeps only a few percent of the weights.  Call it before any mask is created, so
    that magnitude masks are chosen from these weights.
    """
    if scheme not in WEIGHT_INITS:
        raise ValueError(f"unknown weight init {scheme!r}; allowed: {', '.join(WEIGHT_INITS)}")
    if scheme == "orthogonal":
        for m in module.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight)
                if m.bias is not None:
                    m.bias.zero_()
    return module
