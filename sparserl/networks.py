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
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)
