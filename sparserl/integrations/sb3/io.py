"""Saving and loading SB3 models that sparserl changed: :func:`load` rebuilds shrunk widths
(``Algo.load`` cannot), and :func:`load_zip_safely` / :func:`algorithm_of_zip` read an SB3
zip for ``sparserl export`` without unpickling anything from it."""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from ...errors import UserError
from ...structured import hidden_widths, shrink
from .discovery import prunable_chains

__all__ = ["ARCHITECTURE_ATTRIBUTE", "resize_to_architecture", "load", "algorithm_of_zip", "zip_custom_objects",
           "load_zip_safely"]

#: model attribute (saved by SB3 with the model) holding the hidden widths of shrunk chains
ARCHITECTURE_ATTRIBUTE = "sparserl_architecture"


def resize_to_architecture(model: BaseAlgorithm, architecture: Mapping[str, Sequence[int]]) -> None:
    """Shrink a freshly built model's chains (and targets, optimizers) to the hidden widths
    ``architecture`` (``{chain name: [widths]}``, as stored in ``model.sparserl_architecture``).
    The kept values are placeholders: loading the saved parameters overwrites them."""
    chains = prunable_chains(model)
    unknown = sorted(set(architecture) - set(chains))
    if unknown:
        raise UserError(f"saved architecture names unknown chain(s) {unknown}; allowed: {', '.join(chains)}")
    for name, widths in architecture.items():
        spec = chains[name]
        current = hidden_widths(spec.chain)
        if len(widths) != len(current) or any(int(w) < 1 or int(w) > c for w, c in zip(widths, current)):
            raise UserError(f"saved widths {list(widths)} of chain {name!r} do not fit the model's {current}; "
                            f"allowed: as many hidden layers, each 1..its built width")
        for layer, width in enumerate(widths):
            if int(width) < current[layer]:
                shrink(spec.chain, layer, torch.arange(int(width)), optimizer=spec.optimizer, mirrors=spec.mirrors)


def load(path, cls: type, env=None, device: Union[torch.device, str] = "auto", **kwargs) -> BaseAlgorithm:
    """Load an SB3 model saved after :class:`StructuredPruningCallback`, with its shrunk widths.

    Same arguments as ``cls.load`` (``cls``: the algorithm class, e.g. ``PPO``). Models without
    a stored architecture (dense or unstructured-sparse ones) load exactly as ``cls.load``.
    """
    if not (isinstance(cls, type) and issubclass(cls, BaseAlgorithm)):
        raise UserError(f"cls={cls!r}; allowed: an SB3 algorithm class such as PPO, A2C, DQN, SAC, TD3")
    import os
    if isinstance(path, (str, os.PathLike)) and not (os.path.isfile(path) or os.path.isfile(f"{os.fspath(path)}.zip")):
        # SB3 would raise a raw FileNotFoundError (it also tries PATH.zip)
        raise UserError(f"{os.fspath(path)!r}: no such SB3 model file (nor {os.fspath(path)}.zip)")

    class _Resizing(cls):
        # SB3's load() restores the saved attributes (ours included), then calls
        # _setup_model(), then loads the state dicts: resize in between.
        def _setup_model(self) -> None:
            super()._setup_model()
            architecture = getattr(self, ARCHITECTURE_ATTRIBUTE, None)
            if architecture:
                resize_to_architecture(self, architecture)

    _Resizing.__name__ = _Resizing.__qualname__ = cls.__name__
    model = _Resizing.load(path, env=env, device=device, **kwargs)
    model.__class__ = cls
    return model


#: the module of the SB3 policy class stored in every SB3 zip -> the algorithm that saved it
_POLICY_MODULES = {"stable_baselines3.dqn.policies": "DQN", "stable_baselines3.td3.policies": "TD3",
                   "stable_baselines3.sac.policies": "SAC", "stable_baselines3.ppo.policies": "PPO",
                   "stable_baselines3.a2c.policies": "A2C"}


def _zip_data(path) -> dict:
    """The readable ``data`` JSON of an SB3 model zip (its pickled values stay unread)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            data = json.loads(zf.read("data"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a Stable-Baselines3 model zip ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a Stable-Baselines3 model zip (data is not a JSON object)")
    return data


def algorithm_of_zip(path) -> type:
    """The SB3 algorithm class that saved ``path`` (from the zip's stored policy class). PPO and
    A2C share ``ActorCriticPolicy`` (stored as ``common.policies``); their policies export alike."""
    import stable_baselines3 as sb3_pkg
    data = _zip_data(path)
    module = str(data.get("policy_class", {}).get("__module__", ""))
    if module in _POLICY_MODULES:
        return getattr(sb3_pkg, _POLICY_MODULES[module])
    if module == "stable_baselines3.common.policies":
        return sb3_pkg.PPO
    raise UserError(f"{path}: policy class from {module or 'an unknown module'}; supported: DQN, TD3, SAC, PPO, A2C")


#: class reprs (``str(cls)``, as SB3 stores non-JSON values beside their pickle) a zip's
#: ``policy_kwargs`` may name, resolved here by name instead of unpickling the zip's copy
_SAFE_CLASSES = {f"<class '{c.__module__}.{c.__qualname__}'>": c for c in (
    nn.ReLU, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.GELU, nn.SiLU,
    torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.SGD)}


def _space_from_json(key: str, item: dict, path):
    """A Box or Discrete space rebuilt from the readable attributes SB3 stores next to the
    pickle. Box bounds come from their printed form (numpy prints up to 8 decimals), which
    is exact for the usual bounds; a summarised ('...') array is refused."""
    import numpy as np
    from gymnasium import spaces

    kind = str(item.get(":type:", ""))
    try:
        if kind.endswith("spaces.discrete.Discrete'>"):
            return spaces.Discrete(int(item["n"]), start=int(item.get("start", 0)))
        if kind.endswith("spaces.box.Box'>"):
            shape = tuple(int(d) for d in item["_shape"])
            dtype = np.dtype(str(item["dtype"]))
            bounds = []
            for side in ("low", "high"):
                text = str(item[side])
                if "..." in text:
                    raise ValueError(f"{side} is summarised")
                values = np.array(text.replace("[", " ").replace("]", " ").split(), dtype=np.float64)
                bounds.append(values.reshape(shape).astype(dtype))
            return spaces.Box(low=bounds[0], high=bounds[1], shape=shape, dtype=dtype)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the stored {key} ({exc})") from None
    raise UserError(f"{path}: stored {key} is {kind or 'of unknown type'}; supported: Box, Discrete")


def _policy_kwargs_from_json(item: dict, path) -> dict:
    kwargs = {}
    for name, value in item.items():
        if name.startswith(":"):
            continue
        if isinstance(value, str) and value.startswith("<"):
            if value not in _SAFE_CLASSES:
                raise UserError(f"{path}: policy_kwargs[{name!r}] = {value[:80]} cannot be read without "
                                f"unpickling; supported: torch.nn activations and torch.optim optimizers")
            value = _SAFE_CLASSES[value]
        kwargs[name] = value
    return kwargs


def zip_custom_objects(path, cls: type) -> dict:
    """``custom_objects`` for ``cls.load(path)`` that replace *every* pickled value of the zip's
    ``data`` JSON, so loading never unpickles anything from the file (a crafted zip's pickle
    runs arbitrary code). The policy class is the algorithm's ``MlpPolicy``, spaces and
    ``policy_kwargs`` are rebuilt from their readable JSON attributes, schedules become
    constants and anything else pickled is dropped (``None``): enough to rebuild the policy and
    load its weights (``.pth`` files are read with ``weights_only=True``), not to resume training."""
    data = _zip_data(path)
    objects: dict = {}
    for key, item in data.items():
        if not (isinstance(item, dict) and ":serialized:" in item):
            continue
        if key == "policy_class":
            objects[key] = cls.policy_aliases["MlpPolicy"]
        elif key in ("observation_space", "action_space"):
            objects[key] = _space_from_json(key, item, path)
        elif key == "policy_kwargs":
            objects[key] = _policy_kwargs_from_json(item, path)
        elif key in ("lr_schedule", "clip_range", "clip_range_vf", "exploration_schedule"):
            objects[key] = _constant_schedule
        elif key == "train_freq":
            objects[key] = 1
        else:
            objects[key] = None
    return objects


def _constant_schedule(_progress_remaining: float) -> float:
    """Stands in for a zip's pickled schedules: exporting never steps an optimizer."""
    return 0.0


def load_zip_safely(path, cls: type) -> BaseAlgorithm:
    """:func:`load` for ``sparserl export``: nothing of the zip is unpickled
    (:func:`zip_custom_objects`); a zip SB3 cannot rebuild that way fails in one line."""
    objects = zip_custom_objects(path, cls)
    try:
        return load(path, cls, device="cpu", custom_objects=objects)
    except UserError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError, AssertionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path}: cannot rebuild the SB3 {cls.__name__} model without unpickling "
                        f"({type(exc).__name__}: {first})") from None
