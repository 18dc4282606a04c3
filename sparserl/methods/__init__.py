"""``--method`` values: one class each, registered here and nowhere else.

| method            | class                               | what it attaches                                  |
|-------------------|-------------------------------------|---------------------------------------------------|
| dense             | :class:`~.dense.Dense`              | nothing                                           |
| tiny              | :class:`~.dense.Tiny`               | nothing; hidden widths narrowed to the sparse count|
| static            | :class:`~.sparse.Static`            | fixed ERK/uniform masks (SS: random mask)         |
| set               | :class:`~.sparse.SET`               | masks + drop smallest |w|, grow random            |
| rigl              | :class:`~.sparse.RigL`              | masks + drop smallest |w|, grow largest |grad|    |
| rlx2              | :class:`~.rlx2.RLx2`                | rigl + delayed 3-step target + dynamic buffer     |
| structured        | :class:`~.structured.Structured`    | importance regulariser + threshold + shrinking    |
| neuron-magnitude  | :class:`~.structured.NeuronMagnitude`| neuron pruning by weight-group norm              |
| gmp               | :class:`~.gmp.GMP`                  | gradual magnitude pruning of weights              |

Adding a method: a new file with a :class:`~.base.Method` subclass and one line below, or, from
outside the package, :func:`register_method`. A method's options are declared in option blocks
(:mod:`.options`); a registered method may bring blocks of its own, whose values a run takes from
``--method-options`` (``method_options`` in YAML).
"""
from __future__ import annotations

from collections.abc import Sequence

from ..errors import UserError
from .base import Method
from .dense import Dense, Tiny
from .gmp import GMP
from .rlx2 import RLx2
from .sparse import SET, RigL, Static
from .structured import NeuronMagnitude, Structured

REGISTRY: dict[str, type[Method]] = {m.name: m for m in (
    Dense, Tiny, Static, SET, RigL, RLx2, Structured, NeuronMagnitude, GMP)}


class _MethodNames(Sequence):
    """The ``--method`` values: a live view of :data:`REGISTRY` (so a method added with
    :func:`register_method` is an allowed ``--method`` everywhere the names are checked)."""

    def __getitem__(self, index):
        return tuple(REGISTRY)[index]

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return repr(tuple(REGISTRY))


METHODS = _MethodNames()


def register_method(cls: type[Method]) -> type[Method]:
    """Add a method (a :class:`Method` subclass with a new ``name``) to every ``--method`` lookup:
    the trainer, the Python API and ``sparserl train`` in this process. Its ``OPTION_BLOCKS`` may
    reuse the built-in blocks (their values come from the usual flags) and add its own (their
    values come from ``method_options``). Usable as a class decorator; returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise UserError(f"register_method({cls!r}): allowed: a subclass of sparserl.methods.Method")
    name = vars(cls).get("name")
    if not isinstance(name, str) or not name or name in REGISTRY:
        taken = f" (taken: {', '.join(REGISTRY)})" if name in REGISTRY else ""
        raise UserError(f"register_method({cls.__name__}): name {name!r}{taken}; allowed: a new non-empty "
                        f"string set on the class itself")
    REGISTRY[name] = cls
    return cls


def method_class(name: str) -> type[Method]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown --method {name!r}; allowed: {', '.join(METHODS)}") from None


def make_method(cfg) -> Method:
    """The method object of a resolved config."""
    return method_class(cfg.method)(cfg)


def attach_method(agent, cfg, total_updates: int) -> Method:
    """Build ``cfg``'s method and attach it to a hand-built agent (tests, benchmarks, library use)."""
    method = make_method(cfg)
    method.attach(agent, total_updates)
    return method


__all__ = ["Method", "REGISTRY", "METHODS", "method_class", "make_method", "attach_method", "register_method"]
