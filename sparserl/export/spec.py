"""A trained policy as plain float32 arrays: the one thing every export format is written from.

Agents describe their deployment-time policy (``agent.policy_spec()``) as a chain of Linear
layers with ReLU (or Tanh, SB3's PPO/A2C default) between them, the observation preprocessing (flatten to 1-D float32) and an
output head; the writers (torch, ONNX, npz, C) and the size report then never need to know
which algorithm produced it.  This module imports numpy only (torch tensors are accepted by
duck typing), so specs can be built and written where torch is not installed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import UserError

HEADS = ("tanh", "argmax", "clip")
"""``tanh``: continuous action ``tanh(x) * action_scale + action_offset`` (TD3, SAC's mean);
``argmax``: index of the largest output (DQN's greedy action); ``clip``: the output clipped to
``[action_low, action_high]`` (SB3 PPO/A2C's deterministic action: the Gaussian mean, clipped
to the action box as ``predict`` does)."""

ACTIVATIONS = ("relu", "tanh")
"""Between hidden layers: ``relu`` (sparserl's networks) or ``tanh`` (SB3's on-policy MLPs)."""


def activate(x: np.ndarray, activation: str) -> np.ndarray:
    """The hidden activation, in x's dtype (every format applies the same function)."""
    return np.maximum(x, 0.0) if activation == "relu" else np.tanh(x)


def as_float32(x) -> np.ndarray:
    """A float32 numpy copy of an array or a torch tensor (no torch import needed)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=np.float32, copy=True)


@dataclass
class PolicySpec:
    """``obs -> flatten -> [Linear -> ReLU]* -> Linear -> head``, weights as (n_out, n_in)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    head: str
    obs_shape: tuple[int, ...]
    action_scale: Optional[np.ndarray] = None
    action_offset: Optional[np.ndarray] = None
    activation: str = "relu"
    action_low: Optional[np.ndarray] = None
    action_high: Optional[np.ndarray] = None
    """``clip`` head only: the action box."""
    reference_hidden: Optional[tuple[int, ...]] = None
    """Hidden widths of the configured full-width network: the 'dense fp32' model that the
    size report compares with (shrunk or narrowed policies are smaller than it)."""
    removed_neurons: list[int] = field(default_factory=list)
    """Per hidden layer, neurons dropped by :meth:`without_dead_neurons`."""

    def __post_init__(self):
        self.weights = [as_float32(w) for w in self.weights]
        self.biases = [as_float32(b) for b in self.biases]
        self.obs_shape = tuple(int(d) for d in self.obs_shape)
        if self.head not in HEADS:
            raise ValueError(f"unknown policy head {self.head!r}; allowed: {', '.join(HEADS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        if not self.weights or len(self.weights) != len(self.biases):
            raise ValueError("a policy needs at least one layer and one bias per layer")
        n_in = self.obs_dim
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.ndim != 2 or w.shape[1] != n_in or b.shape != (w.shape[0],):
                raise ValueError(f"layer {i}: weight {w.shape} / bias {b.shape} do not chain from {n_in} inputs")
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                raise UserError(f"layer {i} of the policy holds NaN or inf weights; it cannot be exported")
            n_in = w.shape[0]
        if self.head == "tanh":
            self.action_scale = as_float32(self.action_scale).reshape(-1)
            self.action_offset = as_float32(self.action_offset).reshape(-1)
            if self.action_scale.shape != (self.out_dim,) or self.action_offset.shape != (self.out_dim,):
                raise ValueError("tanh head: action_scale and action_offset need one value per output")
        if self.head == "clip":
            self.action_low = as_float32(self.action_low).reshape(-1)
            self.action_high = as_float32(self.action_high).reshape(-1)
            if self.action_low.shape != (self.out_dim,) or self.action_high.shape != (self.out_dim,):
                raise ValueError("clip head: action_low and action_high need one value per output")
        if self.reference_hidden is not None:
            self.reference_hidden = tuple(int(h) for h in self.reference_hidden)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_linears(cls, linears: Sequence, *, head: str, obs_shape: Iterable[int],
                     keep_outputs: Optional[int] = None, **kw) -> "PolicySpec":
        """From a chain of ``nn.Linear``-like modules (``.weight``, ``.bias``).

        ``keep_outputs``: export only the first k outputs of the last layer (SAC's actor
        emits ``[mean, log_std]``; the deterministic action needs only the mean)."""
        weights = [as_float32(m.weight) for m in linears]
        biases = [as_float32(m.bias) if m.bias is not None else np.zeros(m.weight.shape[0], np.float32)
                  for m in linears]
        if keep_outputs is not None:
            weights[-1], biases[-1] = weights[-1][:keep_outputs], biases[-1][:keep_outputs]
        return cls(weights, biases, head, tuple(obs_shape), **kw)

    # -- shape ----------------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.obs_shape)) if self.obs_shape else 1

    @property
    def out_dim(self) -> int:
        """Outputs of the last layer (actions for ``tanh``, Q-values for ``argmax``)."""
        return int(self.weights[-1].shape[0])

    @property
    def action_dim(self) -> int:
        """Numbers in one action: ``out_dim`` for ``tanh`` and ``clip``, 1 (an index) for ``argmax``."""
        return 1 if self.head == "argmax" else self.out_dim

    @property
    def hidden(self) -> list[int]:
        return [int(w.shape[0]) for w in self.weights[:-1]]

    # -- reference forward ----------------------------------------------------------------
    def outputs(self, obs: np.ndarray) -> np.ndarray:
        """The last layer's raw outputs (float64) of a batch ``(B, *obs_shape)``."""
        x = np.asarray(obs, dtype=np.float64).reshape(-1, self.obs_dim)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w.T.astype(np.float64) + b
            if i < len(self.weights) - 1:
                x = activate(x, self.activation)
        return x

    def apply_head(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs -> actions (float32, or int64 indices for ``argmax``)."""
        if self.head == "tanh":
            return (np.tanh(x) * self.action_scale + self.action_offset).astype(np.float32)
        if self.head == "clip":
            return np.clip(x, self.action_low, self.action_high).astype(np.float32)
        return x.argmax(-1)

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """Plain dense numpy forward of a batch ``(B, *obs_shape)`` (float64 accumulation):
        the reference the tests compare every format with."""
        return self.apply_head(self.outputs(obs))

    # -- simplification -------------------------------------------------------------------
    def without_dead_neurons(self) -> "PolicySpec":
        """The same function with hidden neurons that cannot matter removed.

        A hidden neuron with no incoming non-zero weight outputs the constant ``act(b_j)``:
        its contribution ``W_next[:, j] * act(b_j)`` is folded into the next layer's bias.
        A neuron with no outgoing non-zero weight contributes nothing.  Either way the neuron
        goes, which physically shrinks masked (unshrunk) structured runs and drops the
        neurons that unstructured sparse training disconnected.  Repeated until nothing
        changes (removing columns can disconnect neurons further on); one neuron per layer
        is always kept so every format sees a well-formed chain."""
        weights = [w.copy() for w in self.weights]
        biases = [b.copy() for b in self.biases]
        removed = [0] * (len(weights) - 1)
        changed = True
        while changed:
            changed = False
            for layer in range(len(weights) - 1):
                w_in, b_in, w_out = weights[layer], biases[layer], weights[layer + 1]
                no_input = ~np.any(w_in != 0, axis=1)
                no_output = ~np.any(w_out != 0, axis=0)
                drop = no_input | no_output
                if not drop.any():
                    continue
                if drop.all():
                    drop[np.flatnonzero(drop)[0]] = False
                    if not drop.any():
                        continue
                fold = drop & no_input & ~no_output
                if fold.any():
                    constant = activate(b_in[fold], self.activation)
                    biases[layer + 1] = (biases[layer + 1] + w_out[:, fold] @ constant).astype(np.float32)
                keep = ~drop
                weights[layer], biases[layer] = w_in[keep], b_in[keep]
                weights[layer + 1] = w_out[:, keep]
                removed[layer] += int(drop.sum())
                changed = True
        return dataclasses.replace(self, weights=weights, biases=biases,
                                   removed_neurons=[a + b for a, b in
                                                    zip(self.removed_neurons or [0] * len(removed), removed)])
