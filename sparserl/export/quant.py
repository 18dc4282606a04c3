"""int8 export: weights as int8 with float scales, activations quantized on the fly, int32 sums.

Why this scheme: boards without an FPU (or with a slow one) spend their time in the
multiply-accumulates, so those must be integer; everything else (one scale per layer input,
one rescale per output) is O(width) and may stay in float.  No calibration data is needed:

* Weights: symmetric int8, ``w ~ s * q`` with ``q`` in [-127, 127] and one scale ``s`` per
  output row (``row``, the default: a row with small weights keeps its resolution) or one per
  layer (``layer``).  Zero weights stay exactly zero, so sparsity is kept.
* Activations: each layer's input vector ``x`` gets its own scale ``a = max|x| / 127`` at run
  time (``x ~ a * qx``, rounded half away from zero), so no range has to be guessed.
* Each output: ``y_i = float(sum_j q_ij * qx_j) * (a * s_i) + b_i`` with the sum in int32
  (``|sum| <= n_in * 127 * 127``: no overflow below 133,000 inputs).

The generated C and the npz runtime compute exactly this (:func:`int8_outputs` is the numpy
statement of it).  :func:`error_bound` gives, per observation, a bound on how far the int8
policy's outputs and actions can be from the float32 policy's: the rounding errors
``|w - s q| <= s/2`` (non-zero weights only) and ``|x - a qx| <= a/2`` are propagated through
the layers (through each monotone activation by its change over the error interval), plus a
small allowance for float32 rounding.  It is a worst case (errors of all signs adding up), so
it is usually far above the error actually seen: the export report prints both, the bound
and the largest difference measured on probe observations.  The tests check every int8
format against the bound.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime import QMAX, _Int8Layer, quantize_input
from .spec import PolicySpec, activate

DTYPES = ("float32", "int8")
SCALES = ("row", "layer")
#: per layer, the float32 rounding allowance of the bound, relative to sum_j |w_ij x_j| + |b_i|
#: (float32 has 24 bits; a few roundings per product and sum stay far below this)
FLOAT_SLACK = 1e-5


def quantize_weight(weight: np.ndarray, scales: str = "row") -> tuple[np.ndarray, np.ndarray]:
    """``(q int8 (n_out, n_in), scale float32 (n_out,))`` with ``weight ~ scale[:, None] * q``.
    An all-zero row (or layer) gets scale 1 and stays all zero."""
    w = np.asarray(weight, np.float32)
    amax = np.abs(w).max(axis=1) if scales == "row" else np.full(w.shape[0], np.abs(w).max(), np.float32)
    scale = np.where(amax > 0, amax / np.float32(QMAX), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -QMAX, QMAX).astype(np.int8)
    return q, scale


@dataclass
class Int8Layer:
    """One quantized layer, kept with its int8 values and scales (the error bound needs them);
    it computes with the runtime's arithmetic, so there is one statement of it."""

    q: np.ndarray       # int8 (n_out, n_in)
    scale: np.ndarray   # float32 (n_out,): per row (equal values for ``layer`` scales)
    bias: np.ndarray    # float32 (n_out,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 batch in -> float32 batch out: the runtime's (and the C's) int8 arithmetic."""
        return _Int8Layer(self.q, self.scale, self.bias)(x)


def int8_layers(spec: PolicySpec, scales: str = "row") -> list[Int8Layer]:
    """The spec's layers quantized as every int8 export stores them."""
    out = []
    for w, b in zip(spec.weights, spec.biases):
        q, s = quantize_weight(w, scales)
        out.append(Int8Layer(q, s, np.asarray(b, np.float32)))
    return out


def int8_outputs(spec: PolicySpec, obs: np.ndarray, scales: str = "row") -> np.ndarray:
    """The int8 policy's raw outputs (float32) for a batch of observations."""
    x = np.asarray(obs, np.float32).reshape(-1, spec.obs_dim)
    layers = int8_layers(spec, scales)
    for i, layer in enumerate(layers):
        x = layer(x)
        if i < len(layers) - 1:
            x = activate(x, spec.activation).astype(np.float32)
    return x


def int8_forward(spec: PolicySpec, obs: np.ndarray, scales: str = "row") -> np.ndarray:
    """The int8 policy's actions (what the int8 C and npz exports return)."""
    return spec.apply_head(int8_outputs(spec, obs, scales).astype(np.float64))


def _through(y: np.ndarray, e: np.ndarray, f) -> np.ndarray:
    """A bound on ``|f(y') - f(y)|`` over ``|y' - y| <= e`` for a monotone ``f`` (ReLU, tanh): the
    larger change at either end of the interval (a ReLU that stays off adds no error at all)."""
    return np.maximum(np.abs(f(y + e) - f(y)), np.abs(f(y - e) - f(y)))


def error_bound(spec: PolicySpec, obs: np.ndarray, scales: str = "row") -> tuple[np.ndarray, np.ndarray]:
    """Per observation, ``(output bound (B, out_dim), action bound (B, action_dim))``: the int8
    policy's raw outputs and actions differ from the float32 policy's by at most this much.

    Layer by layer, with ``x`` the float32 path's input, ``x~`` the int8 path's input and
    ``e >= |x~ - x|`` (0 for the observation): ``|y~_i - y_i| <= sum_j |w^_ij| (a/2 + e_j)
    + s_i/2 * sum_{j: w_ij != 0} |x_j|`` (``w^ = s q`` the dequantized weights, ``a`` the input
    scale of the int8 path), plus :data:`FLOAT_SLACK`. For ``argmax`` the action bound is the
    output bound's maximum: the greedy action cannot change where the best Q-value leads the
    second best by more than twice it."""
    x = np.asarray(obs, np.float64).reshape(-1, spec.obs_dim)
    xq = np.asarray(obs, np.float32).reshape(-1, spec.obs_dim)
    e = np.zeros_like(x)
    layers = int8_layers(spec, scales)
    last = len(layers) - 1
    for i, (w, b, layer) in enumerate(zip(spec.weights, spec.biases, layers)):
        w64 = np.asarray(w, np.float64)
        w_hat = np.abs(layer.q.astype(np.float64) * layer.scale[:, None].astype(np.float64))
        _, a = quantize_input(xq)
        nonzero = (w64 != 0).astype(np.float64)
        bound = ((a[:, None].astype(np.float64) / 2 + e) @ w_hat.T
                 + np.abs(x) @ nonzero.T * (layer.scale.astype(np.float64) / 2)[None, :])
        y = x @ w64.T + b
        bound += FLOAT_SLACK * (np.abs(x) @ np.abs(w64).T + np.abs(b)) + 1e-7
        yq = layer(xq)
        if i < last:
            x, xq, e = (activate(y, spec.activation), activate(yq, spec.activation).astype(np.float32),
                        _through(y, bound, lambda v: activate(v, spec.activation)))
        else:
            y_last, e = y, bound
    if spec.head == "tanh":
        act = (_through(y_last, e, np.tanh) * np.abs(spec.action_scale)[None, :]
               + FLOAT_SLACK * (np.abs(spec.action_offset) + np.abs(spec.action_scale))[None, :])
    elif spec.head == "clip":
        act = e.copy()
    else:
        act = e.max(axis=1, keepdims=True)
    return e, act
