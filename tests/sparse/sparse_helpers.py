import torch
from torch import nn


class Chain(nn.Module):
    """A tiny MLP chain like sparserl.networks.MLP (names layers.0.weight, ...)."""

    def __init__(self, dims=(4, 16, 16, 2)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def regression_data(n=128, d_in=4, d_out=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    w = torch.randn(d_in, d_out, generator=g)
    return x, torch.tanh(x @ w)
