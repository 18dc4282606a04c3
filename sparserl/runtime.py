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
``content_sha256`` (:data:`HASH_KEY`, in files from the hash's introduction on) is
:func:`content_hash` of every other array, int8 ones included; :meth:`Policy.load`
recomputes it and validates every shape, index and scale (:func:`check_layer`), so a damaged
or hand-made file is refused instead of acting wrongly: numpy would wrap a CSR index of -1 to
the last input, and NaN weights return NaN actions.
"""
from __future__ import annotations

import ctypes
import hashlib
from pathlib import Path

import numpy as np

FORMAT = "sparserl-policy"
VERSION = 2
QMAX = 127
HASH_KEY = "content_sha256"
MAX_LAYERS = 4096


def content_hash(arrays) -> str:
    """SHA-256 over the arrays of an npz (name, dtype, shape, bytes; names sorted), the hash
    entry itself left out."""
    h = hashlib.sha256()
    for name in sorted(k for k in arrays if k != HASH_KEY):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _whole(value) -> int | None:
    a = np.asarray(value)
    if a.shape != () or a.dtype.kind not in "iu":
        return None
    return int(a)


def _check_values(i: int, what: str, values: np.ndarray, dtype: str) -> None:
    """float32 layers: finite floats; int8 layers: int8 in [-QMAX, QMAX] (the int8 arithmetic
    and its error bound assume the symmetric range; -128 never comes out of the quantizer)."""
    if dtype == "int8":
        if values.dtype != np.int8 or (values.size and int(np.abs(values.astype(np.int16)).max()) > QMAX):
            raise ValueError(f"layer {i}: {what} must be int8 values in [-{QMAX}, {QMAX}]")
    elif values.dtype.kind != "f":
        raise ValueError(f"layer {i}: {what} must be finite floats")
    elif not np.isfinite(values).all():
        raise ValueError(f"layer {i}: {what} holds non-finite values (NaN/inf); allowed: finite floats")


def check_layer(i: int, form: str, n_out: int, n_in: int, bias, weight=None, data=None, indices=None,
                indptr=None, dtype: str = "float32", scale=None) -> None:
    """Raise ``ValueError`` naming layer ``i`` unless its arrays fit its shape: bias (n_out,),
    dense weight (n_out, n_in), CSR ``indptr`` of n_out + 1 non-decreasing offsets from 0 to
    len(data), every index in [0, n_in), all values finite; an int8 layer's values in
    [-127, 127] with a finite positive ``scale`` per row (n_out,) or for the layer (1,). Used by
    :meth:`Policy.load` and by the C generator (a generated C array indexed by -1 reads outside
    its input)."""
    if n_out < 1 or n_in < 1:
        raise ValueError(f"layer {i}: shape ({n_out}, {n_in}); allowed: both >= 1")
    if dtype not in ("float32", "int8"):
        raise ValueError(f"layer {i} has unknown dtype {dtype!r}; allowed: float32, int8")
    bias = np.asarray(bias)
    if bias.shape != (n_out,) or bias.dtype.kind != "f" or not np.isfinite(bias).all():
        raise ValueError(f"layer {i}: bias of shape {bias.shape} (allowed: ({n_out},) finite floats)")
    if dtype == "int8":
        scale = np.asarray(scale)
        if (scale.shape not in ((n_out,), (1,)) or scale.dtype.kind != "f" or not np.isfinite(scale).all()
                or (scale <= 0).any()):
            raise ValueError(f"layer {i}: int8 scale of shape {scale.shape}; allowed: ({n_out},) or (1,) "
                             f"finite floats > 0")
    if form == "dense":
        weight = np.asarray(weight)
        if weight.shape != (n_out, n_in):
            raise ValueError(f"layer {i}: weight of shape {weight.shape}; allowed: ({n_out}, {n_in}) {dtype} values")
        _check_values(i, "weight", weight, dtype)
        return
    if form != "csr":
        raise ValueError(f"layer {i} has unknown storage form {form!r}; allowed: dense, csr")
    data, indices, indptr = np.asarray(data), np.asarray(indices), np.asarray(indptr)
    if data.ndim != 1:
        raise ValueError(f"layer {i}: CSR data must be a 1-D array")
    _check_values(i, "CSR data", data, dtype)
    if indices.shape != data.shape or indices.dtype.kind not in "iu":
        raise ValueError(f"layer {i}: CSR indices of shape {indices.shape}; allowed: integers, one per value "
                         f"({data.shape[0]})")
    if indptr.shape != (n_out + 1,) or indptr.dtype.kind not in "iu":
        raise ValueError(f"layer {i}: CSR indptr of shape {indptr.shape}; allowed: ({n_out + 1},) integers")
    steps = np.diff(indptr.astype(np.int64))
    if int(indptr[0]) != 0 or int(indptr[-1]) != data.shape[0] or (steps < 0).any():
        raise ValueError(f"layer {i}: CSR indptr must rise from 0 to {data.shape[0]} (the number of values)")
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= n_in):
        bad = int(indices.min()) if int(indices.min()) < 0 else int(indices.max())
        raise ValueError(f"layer {i}: CSR index {bad} is outside the layer's {n_in} inputs (allowed: 0..{n_in - 1})")


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


def _csr_to_dense(n_out: int, n_in: int, data, indices, indptr) -> np.ndarray:
    """A checked CSR layer as its dense (n_out, n_in) matrix, in the dtype of ``data``: what
    :meth:`Policy.load` computes with by default, and always for int8 layers."""
    weight = np.zeros((n_out, n_in), np.asarray(data).dtype)
    rows = np.repeat(np.arange(n_out), np.diff(np.asarray(indptr).astype(np.intp)))
    weight[rows, np.asarray(indices).astype(np.intp)] = data
    return weight


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
            if HASH_KEY in z.files and str(z[HASH_KEY]) != content_hash({k: z[k] for k in z.files}):
                raise ValueError(f"{path} fails its content check (sha256 differs from the one written with it): "
                                 f"the file was damaged or edited")
            activation = str(z["activation"])
            if activation not in ("relu", "tanh"):
                raise ValueError(f"{path}: unsupported activation {activation!r}; allowed: relu, tanh")
            n_layers = _whole(z["n_layers"])
            if n_layers is None or not 1 <= n_layers <= MAX_LAYERS:
                raise ValueError(f"{path}: n_layers {z['n_layers']}; allowed: an integer in [1, {MAX_LAYERS}]")
            obs_shape = np.asarray(z["obs_shape"])
            if obs_shape.ndim != 1 or obs_shape.dtype.kind not in "iu" or (obs_shape < 1).any():
                raise ValueError(f"{path}: obs_shape {obs_shape.tolist()}; allowed: integers >= 1")
            head = str(z["head"])
            layers, width = [], int(np.prod(obs_shape)) if obs_shape.size else 1
            for i in range(n_layers):
                shape = np.asarray(z[f"layer{i}.shape"])
                if shape.shape != (2,) or shape.dtype.kind not in "iu":
                    raise ValueError(f"{path}: layer {i}: shape {shape.tolist()}; allowed: [n_out, n_in]")
                form, (n_out, n_in), bias = str(z[f"layer{i}.form"]), (int(d) for d in shape), z[f"layer{i}.bias"]
                if n_in != width:
                    raise ValueError(f"{path}: layer {i} takes {n_in} inputs, but its input has {width} values")
                dtype = str(z[f"layer{i}.dtype"]) if f"layer{i}.dtype" in z.files else "float32"
                arrays = ({"weight": z[f"layer{i}.weight"]} if form == "dense" else
                          {k: z[f"layer{i}.{k}"] for k in ("data", "indices", "indptr")} if form == "csr" else {})
                scale = z[f"layer{i}.scale"] if dtype == "int8" else None
                try:
                    check_layer(i, form, n_out, n_in, bias, **arrays, dtype=dtype, scale=scale)
                except ValueError as exc:
                    raise ValueError(f"{path}: {exc}") from None
                width = n_out
                if dtype == "int8":
                    q = arrays["weight"] if form == "dense" else _csr_to_dense(n_out, n_in, **arrays)
                    layers.append(_Int8Layer(q, scale, bias))
                elif form == "dense":
                    layers.append(_DenseLayer(arrays["weight"], bias))
                elif densify:
                    layers.append(_DenseLayer(_csr_to_dense(n_out, n_in, **arrays), bias))
                else:
                    layers.append(_CSRLayer(arrays["data"], arrays["indices"], arrays["indptr"], n_out, bias))
            scale = z["action_scale"] if head == "tanh" else None
            offset = z["action_offset"] if head == "tanh" else None
            low = z["action_low"] if head == "clip" else None
            high = z["action_high"] if head == "clip" else None
            if head == "tanh":
                for name, values in (("action_scale", scale), ("action_offset", offset)):
                    if np.shape(values) != (width,) or not np.isfinite(values).all():
                        raise ValueError(f"{path}: {name} of shape {np.shape(values)}; allowed: ({width},) finite "
                                         f"numbers (one per action)")
            if head == "clip":  # a box may be unbounded (inf), never NaN or upside down
                for name, values in (("action_low", low), ("action_high", high)):
                    if np.shape(values) != (width,) or np.isnan(values).any():
                        raise ValueError(f"{path}: {name} of shape {np.shape(values)}; allowed: ({width},) numbers "
                                         f"(one per action)")
                if (low > high).any():
                    raise ValueError(f"{path}: action_low exceeds action_high; allowed: low <= high per action")
            return cls(layers, head, tuple(int(d) for d in obs_shape), scale, offset, activation, low, high)

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
