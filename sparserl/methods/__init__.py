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

Adding a method: a new file with a :class:`~.base.Method` subclass and one line below.
"""
from __future__ import annotations

from ..errors import UserError
from .base import Method
from .dense import Dense, Tiny
from .gmp import GMP
from .rlx2 import RLx2
from .sparse import SET, RigL, Static
from .structured import NeuronMagnitude, Structured

REGISTRY: dict[str, type[Method]] = {m.name: m for m in (
    Dense, Tiny, Static, SET, RigL, RLx2, Structured, NeuronMagnitude, GMP)}
METHODS = tuple(REGISTRY)


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


__all__ = ["Method", "REGISTRY", "METHODS", "method_class", "make_method", "attach_method"]
