"""Run an exported sparserl policy with numpy only: no torch, no sparserl training code.

This file imports nothing but numpy and the standard library, so it can be copied next to
a ``policy.npz`` onto a machine that has neither torch nor sparserl::

    from sparserl.runtime import Policy          # or: from runtime import Policy
    policy = Policy.load("policy.npz")
    action = policy.act(obs)                     # one observation -> one action
    actions = policy.act(batch_of_obs)           # (B, *obs_shape) -> (B, act_dim) or (B,)

``CPolicy`` runs a policy compiled from ``sparserl export --format c`` (a shared library)
through ctypes with the same ``act`` interface.

The npz format (written by ``sparserl.export``): scalar string ``format`` = ``FORMAT``, int
``version``, ``obs_shape``, ``head`` (``tanh``, ``argmax`` or ``clip``), ``activation``
(``relu`` or ``tanh``), ``action_scale`` and ``action_offset`` for ``tanh``, ``action_low``
and ``action_high`` for ``clip``, ``n_layers``, then per layer ``i``
``layer{i}.form`` (``dense`` or ``csr``), ``layer{i}.shape`` = (n_out, n_in),
``layer{i}.bias``, and either ``layer{i}.weight`` (n_out, n_in) or the CSR arrays
``layer{i}.data``, ``layer{i}.indices`` (input column of each non-zero) and
``layer{i}.indptr`` (row i's non-zeros are ``data[indptr[i]:indptr[i+1]]``).  Version 2 adds
int8 layers: ``layer{i}.dtype`` = ``int8``, int8 weights/data and ``layer{i}.scale`` (one
float32 per row, or one for the layer); such a layer computes :class:`_Int8Layer`'s integer
arithmetic.  A file that uses nothing of version 2 is written as version 1.
The forward pass: flatten the observation to float32, ``x = act(x W^T + b)`` for every
layer but the last, then ``tanh(x) * action_scale + action_offset``, ``argmax(x)`` or
``clip(x, action_low, action_high)``.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

FORMAT = "sparserl-policy"
VERSION = 2
QMAX = 127


def quantize_input(x: np.ndarray):
    """Per row of a float32 batch: ``(qx int32, a float32)`` with ``x ~ a * qx``, ``a = max|x|/127``,
    rounded half away from zero: the same float32 operations, in the same order, as the int8 C
    (``a = 0`` for an all-zero row)."""
    x = np.asarray(x, np.float32)
    amax = np.abs(x).max(axis=1)
    safe = np.where(amax > 0, amax, np.float32(1.0)).astype(np.float32)
    inv = (np.float32(QMAX) / safe).astype(np.float32)
    v = (x * inv[:, None]).astype(np.float32)
    half = np.where(v < 0, np.float32(-0.5), np.float32(0.5)).astype(np.float32)
    q = np.clip(np.trunc((v + half).astype(np.float32)), -QMAX, QMAX).astype(np.int32)
    q[amax == 0] = 0
    a = np.where(amax > 0, amax / np.float32(QMAX), np.float32(0.0)).astype(np.float32)
    return q, a


class _Int8Layer:
    """int8 weights ``q`` with float32 scales (``w ~ scale * q``, per row or one per layer); the
    input is quantized per observation (:func:`quantize_input`), the products summed in integers
    (int32 in the C; exact here) and each sum rescaled: ``y = float(sum) * (a * scale) + b``."""

    def __init__(self, q: np.ndarray, scale: np.ndarray, bias: np.ndarray):
        # (n_in, n_out) as int32: numpy's integer matmul then sums in int32, as the C does (no
        # overflow: |sum| <= n_in * 127 * 127 < 2**31 below 133,000 inputs)
        self.q_t = np.ascontiguousarray(np.asarray(q, np.int8).T.astype(np.int32))
        self.scale = np.broadcast_to(np.asarray(scale, np.float32), (self.q_t.shape[1],)).copy()
        self.bias = np.asarray(bias, np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        qx, a = quantize_input(x)
        acc = qx @ self.q_t
        mult = (a[:, None] * self.scale[None, :]).astype(np.float32)
        return (acc.astype(np.float32) * mult + self.bias).astype(np.float32)


class _DenseLayer:
    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        self.weight_t = np.ascontiguousarray(np.asarray(weight, np.float32).T)  # (n_in, n_out): x @ W^T
        self.bias = np.asarray(bias, np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.weight_t
        y += self.bias
        return y


class _CSRLayer:
    """y = x W^T + b with W kept as CSR: gather the inputs each non-zero reads, multiply,
    and sum each row's run of products (``np.add.reduceat`` over the non-empty rows)."""

    def __init__(self, data, indices, indptr, n_out: int, bias):
        self.data = np.asarray(data, np.float32)
        self.indices = np.asarray(indices).astype(np.intp)
        indptr = np.asarray(indptr).astype(np.intp)
        self.rows = np.flatnonzero(np.diff(indptr) > 0)
        self.starts = indptr[:-1][self.rows]
        self.n_out = n_out
        self.bias = np.asarray(bias, np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.broadcast_to(self.bias, (x.shape[0], self.n_out)).copy()
        if self.rows.size:
            y[:, self.rows] += np.add.reduceat(x[:, self.indices] * self.data, self.starts, axis=1)
        return y


class Policy:
    """A numpy forward pass over the exported layers."""

    def __init__(self, layers, head: str, obs_shape, action_scale=None, action_offset=None,
                 activation: str = "relu", action_low=None, action_high=None):
        if head not in ("tanh", "argmax", "clip"):
            raise ValueError(f"unknown policy head {head!r}")
        if activation not in ("relu", "tanh"):
            raise ValueError(f"unsupported activation {activation!r}")
        self.layers = list(layers)
        self.head = head
        self.activation = activation
        self.action_low = None if action_low is None else np.asarray(action_low, np.float32)
        self.action_high = None if action_high is None else np.asarray(action_high, np.float32)
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.obs_dim = int(np.prod(self.obs_shape)) if self.obs_shape else 1
        self.action_scale = None if action_scale is None else np.asarray(action_scale, np.float32)
        self.action_offset = None if action_offset is None else np.asarray(action_offset, np.float32)

    @classmethod
    def load(cls, path: str | Path, densify: bool = True) -> "Policy":
        """Read an exported ``.npz``.

        ``densify=True`` (default) expands CSR layers to dense matrices in memory: for
        actor-sized layers numpy's dense matmul is faster than its gather/reduce CSR product
        (see benchmarks/latency.py); ``densify=False`` keeps float32 CSR layers as they are stored
        (int8 layers are always expanded, to int32 values: the size of a dense float32 layer)."""
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z or str(z["format"]) != FORMAT:
                raise ValueError(f"{path} is not a sparserl policy file")
            if int(z["version"]) > VERSION:
                raise ValueError(f"{path} has format version {int(z['version'])}; this runtime reads up to {VERSION}")
            activation = str(z["activation"])
            if activation not in ("relu", "tanh"):
                raise ValueError(f"{path}: unsupported activation {activation!r}")
            layers = []
            for i in range(int(z["n_layers"])):
                form, (n_out, n_in), bias = str(z[f"layer{i}.form"]), z[f"layer{i}.shape"], z[f"layer{i}.bias"]
                dtype = str(z[f"layer{i}.dtype"]) if f"layer{i}.dtype" in z else "float32"
                if dtype == "int8":
                    if form == "dense":
                        q = z[f"layer{i}.weight"]
                    elif form == "csr":
                        q = np.zeros((int(n_out), int(n_in)), np.int8)
                        indptr = z[f"layer{i}.indptr"].astype(np.intp)
                        q[np.repeat(np.arange(int(n_out)), np.diff(indptr)), z[f"layer{i}.indices"].astype(np.intp)] = \
                            z[f"layer{i}.data"]
                    else:
                        raise ValueError(f"{path}: layer {i} has unknown storage form {form!r}")
                    layers.append(_Int8Layer(q, z[f"layer{i}.scale"], bias))
                    continue
                if dtype != "float32":
                    raise ValueError(f"{path}: layer {i} has unknown dtype {dtype!r}")
                if form == "dense":
                    layers.append(_DenseLayer(z[f"layer{i}.weight"], bias))
                elif form == "csr":
                    data, indices, indptr = z[f"layer{i}.data"], z[f"layer{i}.indices"], z[f"layer{i}.indptr"]
                    if densify:
                        weight = np.zeros((int(n_out), int(n_in)), np.float32)
                        rows = np.repeat(np.arange(int(n_out)), np.diff(indptr.astype(np.intp)))
                        weight[rows, indices.astype(np.intp)] = data
                        layers.append(_DenseLayer(weight, bias))
                    else:
                        layers.append(_CSRLayer(data, indices, indptr, int(n_out), bias))
                else:
                    raise ValueError(f"{path}: layer {i} has unknown storage form {form!r}")
            head = str(z["head"])
            scale = z["action_scale"] if head == "tanh" else None
            offset = z["action_offset"] if head == "tanh" else None
            low = z["action_low"] if head == "clip" else None
            high = z["action_high"] if head == "clip" else None
            return cls(layers, head, tuple(z["obs_shape"]), scale, offset, activation, low, high)

    def act(self, obs):
        """One observation (``obs_shape``) -> one action; a batch ``(..., *obs_shape)`` ->
        ``(..., act_dim)`` float32 actions (``tanh``) or ``(...)`` int64 indices (``argmax``)."""
        x = np.asarray(obs, dtype=np.float32)
        n = len(self.obs_shape)
        if x.shape[x.ndim - n:] != self.obs_shape or x.ndim < n:
            raise ValueError(f"observation shape {x.shape} does not end with the policy's {self.obs_shape}")
        batch_shape = x.shape[:x.ndim - n]
        x = x.reshape(-1, self.obs_dim)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                if self.activation == "relu":
                    np.maximum(x, 0.0, out=x)
                else:
                    np.tanh(x, out=x)
        if self.head == "tanh":
            out = np.tanh(x)
            out *= self.action_scale
            out += self.action_offset
            return out.reshape(*batch_shape, -1)
        if self.head == "clip":
            return np.clip(x, self.action_low, self.action_high).reshape(*batch_shape, -1)
        idx = x.argmax(-1)
        return idx.reshape(batch_shape) if batch_shape else idx[0]


class CPolicy:
    """A policy compiled from the generated C (a shared library), called through ctypes.

    Reads ``<prefix>_obs_dim``, ``<prefix>_act_dim`` and ``<prefix>_discrete`` from the library;
    one observation goes through ``<prefix>_act``, a batch through ``<prefix>_act_batch``.
    (The dynamic loader hands back an already loaded library for a path it has seen: load
    a rebuilt library from a new path.)"""

    def __init__(self, lib_path: str | Path, prefix: str = "sparserl"):
        self.lib = ctypes.CDLL(str(Path(lib_path).resolve()))
        self.obs_dim = ctypes.c_int.in_dll(self.lib, f"{prefix}_obs_dim").value
        self.act_dim = ctypes.c_int.in_dll(self.lib, f"{prefix}_act_dim").value
        self.discrete = bool(ctypes.c_int.in_dll(self.lib, f"{prefix}_discrete").value)
        self._act = getattr(self.lib, f"{prefix}_act")
        self._act.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._act.restype = None
        self._act_batch = getattr(self.lib, f"{prefix}_act_batch")
        self._act_batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        self._act_batch.restype = None

    @classmethod
    def load(cls, lib_path: str | Path, prefix: str = "sparserl") -> "CPolicy":
        return cls(lib_path, prefix)

    def act(self, obs):
        """Like :meth:`Policy.act`: a 1-D observation or a batch ``(..., obs_dim)``."""
        x = np.ascontiguousarray(obs, dtype=np.float32)
        if x.ndim <= 1:
            if x.size != self.obs_dim:
                raise ValueError(f"observation has {x.size} values; the policy takes {self.obs_dim}")
            out = np.empty(self.act_dim, np.float32)
            self._act(x.__array_interface__["data"][0], out.__array_interface__["data"][0])
            return np.int64(out[0]) if self.discrete else out
        if x.shape[-1] != self.obs_dim:
            raise ValueError(f"observation shape {x.shape} does not end with {self.obs_dim}")
        n = x.size // self.obs_dim
        out = np.empty((n, self.act_dim), np.float32)
        self._act_batch(x.__array_interface__["data"][0], out.__array_interface__["data"][0], n)
        if self.discrete:
            return out[:, 0].astype(np.int64).reshape(x.shape[:-1])
        return out.reshape(*x.shape[:-1], self.act_dim)


def load_policy(path: str | Path):
    """``.npz`` -> :class:`Policy`; a shared library (``.so``, ``.dylib``, ``.dll``) -> :class:`CPolicy`."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return Policy.load(path)
    if suffix in (".so", ".dylib", ".dll"):
        return CPolicy(path)
    raise ValueError(f"{path}: expected a .npz policy or a compiled shared library (.so/.dylib/.dll)")
