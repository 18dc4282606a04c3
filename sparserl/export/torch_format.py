"""``torch`` export: a plain module built from the spec, saved with ``torch.export``.

The file loads without sparserl (``torch.export.load(path).module()``) and holds the final
architecture (shrunk widths, dead neurons removed) as dense tensors: torch's sparse kernels
are slower than dense ones at these sizes, so the gain in torch is the shrinking only.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .spec import PolicySpec


class ExportedPolicy(nn.Module):
    """``(B, *obs_shape) -> (B, act_dim)`` float32 actions, or ``(B,)`` int64 greedy actions."""

    def __init__(self, spec: PolicySpec):
        super().__init__()
        self.layers = nn.ModuleList()
        for w, b in zip(spec.weights, spec.biases):
            layer = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
            self.layers.append(layer.requires_grad_(False))
        self.head = spec.head
        self.hidden_tanh = spec.activation == "tanh"
        if spec.head == "tanh":
            self.register_buffer("action_scale", torch.from_numpy(spec.action_scale.copy()))
            self.register_buffer("action_offset", torch.from_numpy(spec.action_offset.copy()))
        elif spec.head == "clip":
            self.register_buffer("action_low", torch.from_numpy(spec.action_low.copy()))
            self.register_buffer("action_high", torch.from_numpy(spec.action_high.copy()))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.to(torch.float32).flatten(1)
        for layer in self.layers[:-1]:
            x = torch.tanh(layer(x)) if self.hidden_tanh else torch.relu(layer(x))
        x = self.layers[-1](x)
        if self.head == "argmax":
            return x.argmax(-1)
        if self.head == "clip":
            return torch.minimum(torch.maximum(x, self.action_low), self.action_high)
        return torch.tanh(x) * self.action_scale + self.action_offset


def write_torch(spec: PolicySpec, out_path: Path) -> None:
    module = ExportedPolicy(spec).eval()
    example = torch.zeros((2, *spec.obs_shape), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    with open(out_path, "wb") as fh:  # our own handle: an unwritable path is a plain OSError
        torch.export.save(program, fh)
