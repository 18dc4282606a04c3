"""``npz`` export: every layer in its most compact form, read back by :mod:`sparserl.runtime`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import runtime
from .spec import PolicySpec
from .storage import stored_layers


def write_npz(spec: PolicySpec, out_path: Path) -> None:
    """Write the arrays :meth:`sparserl.runtime.Policy.load` reads (format documented there)."""
    arrays = {"format": np.array(runtime.FORMAT), "version": np.array(runtime.VERSION),
              "obs_shape": np.array(spec.obs_shape, np.int64), "head": np.array(spec.head),
              "activation": np.array(spec.activation), "n_layers": np.array(len(spec.weights))}
    if spec.head == "tanh":
        arrays["action_scale"], arrays["action_offset"] = spec.action_scale, spec.action_offset
    for i, layer in enumerate(stored_layers(spec)):
        arrays[f"layer{i}.form"] = np.array(layer.form)
        arrays[f"layer{i}.shape"] = np.array([layer.n_out, layer.n_in], np.int64)
        arrays[f"layer{i}.bias"] = layer.bias
        if layer.form == "dense":
            arrays[f"layer{i}.weight"] = layer.weight
        else:
            arrays[f"layer{i}.data"] = layer.data
            arrays[f"layer{i}.indices"] = layer.indices
            arrays[f"layer{i}.indptr"] = layer.indptr
    arrays[runtime.HASH_KEY] = np.array(runtime.content_hash(arrays))  # checked by Policy.load
    with open(out_path, "wb") as fh:  # a file object: np.savez would otherwise append ".npz"
        np.savez(fh, **arrays)
