"""``npz`` export: every layer in its most compact form, read back by :mod:`sparserl.runtime`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import runtime
from .spec import PolicySpec
from .storage import stored_layers


def write_npz(spec: PolicySpec, out_path: Path, dtype: str = "float32", scales: str = "row") -> None:
    """Write the arrays :meth:`sparserl.runtime.Policy.load` reads (format documented there);
    version 1 unless the file needs version 2 (int8 layers, tanh activations, a clip head), so older runtimes still read it."""
    new = dtype != "float32" or spec.activation != "relu" or spec.head == "clip"
    arrays = {"format": np.array(runtime.FORMAT), "version": np.array(runtime.VERSION if new else 1),
              "obs_shape": np.array(spec.obs_shape, np.int64), "head": np.array(spec.head),
              "activation": np.array(spec.activation), "n_layers": np.array(len(spec.weights))}
    if spec.head == "tanh":
        arrays["action_scale"], arrays["action_offset"] = spec.action_scale, spec.action_offset
    if spec.head == "clip":
        arrays["action_low"], arrays["action_high"] = spec.action_low, spec.action_high
    for i, layer in enumerate(stored_layers(spec, dtype, scales)):
        if layer.scale is not None:
            arrays[f"layer{i}.dtype"] = np.array("int8")
            arrays[f"layer{i}.scale"] = layer.scale
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
