"""Option values from any source, turned into their declared type or rejected in one line.

A run's options arrive as command-line text, YAML scalars (a ``--config`` file, a preset),
Python keywords (``TD3(env, lr=...)``) or a stored run's config. Each option is declared once,
as a :class:`~sparserl.config.TrainConfig` field with a type hint, optional ``choices`` and a
:class:`Check` of its allowed values; :func:`coerce` is the one function that reads a value for
such a declaration, so every source accepts and rejects exactly the same things.

Values are read the way a user means them. PyYAML follows YAML 1.1, where a float needs a dot:
``lr: 3e-4`` and ``learning_starts: 1e3`` arrive as *strings*, so a number-valued option
accepts a numeric string; an integer option accepts an integral number (``1e3``, ``1000.0``)
but never truncates (``64.5``, ``'1.5'`` and ``True`` are errors); a switch accepts
true/false (and yes/no/on/off, any case), nothing else; NaN and infinities are never a valid
number. Every rejection is a :class:`~sparserl.errors.UserError` of one line naming the
option as its command-line flag, the value, and what is allowed.

This module knows nothing about runs; it is the generic machinery ``config.py`` declares with.
"""
from __future__ import annotations

import math
import numbers
import typing
from decimal import Decimal, InvalidOperation
from dataclasses import field
from typing import Any, Callable

from .errors import UserError

#: Integers beyond this do not fit the int64 counters of numpy/torch.
INT64_MAX = 2 ** 63 - 1

_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")


class Check:
    """An allowed-values rule and the short text that states it (``"in (0, 1]"``, ``">= 1"``).

    The text is what ``--help`` and every error message print, so it is written for users."""

    def __init__(self, test: Callable[[Any], bool], text: str):
        self.test, self.text = test, text

    def __call__(self, value: Any) -> bool:
        return bool(self.test(value))

    def __repr__(self) -> str:
        return f"Check({self.text!r})"


def at_least(low: float, strict: bool = False) -> Check:
    """``>= low`` (``> low`` with ``strict``)."""
    if strict:
        return Check(lambda v: v > low, f"> {low}")
    return Check(lambda v: v >= low, f">= {low}")


def between(low: float, high: float, low_open: bool = False, high_open: bool = False,
            text: str | None = None) -> Check:
    """An interval, e.g. ``between(0, 1, low_open=True)`` is ``in (0, 1]``."""
    def test(v) -> bool:
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    shown = text or f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return Check(test, shown)


class _Bad(Exception):
    """A value that cannot be read as the declared type; ``str`` is the problem (``not an integer``)."""


def _with_label(label: str, name: str, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except UserError as exc:
        text = str(exc)
        raise UserError(label + text[len(flag(name)):] if text.startswith(flag(name)) else text) from None


def flag(name: str) -> str:
    """A config key as its command-line flag: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def show(value: Any) -> str:
    """A value as the user would recognise it in a one-line message (strings quoted, short)."""
    text = repr(value)
    text = " ".join(text.split())  # a multi-line string stays on one line
    return text if len(text) <= 80 else text[:77] + "..."


def kind_of(hint: Any) -> tuple[Any, bool]:
    """``(base type, optional)`` of a field's type hint: ``Optional[int]`` -> ``(int, True)``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union or (args and type(None) in args):
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else hint), type(None) in args
    return hint, False


def _is_list(base: Any) -> bool:
    return typing.get_origin(base) is list


def _is_mapping(base: Any) -> bool:
    return base is dict or typing.get_origin(base) is dict


def describe(base: Any, choices: tuple | None = None, check: Check | None = None) -> str:
    """What a declaration allows, in words: ``an integer >= 1``, ``one of dqn, td3, sac``."""
    if choices:
        return "one of " + ", ".join(map(str, choices))
    rule = f" {check.text}" if check else ""
    if base is bool:
        return "true or false (also yes/no, on/off)"
    if base is int:
        return f"an integer{rule}"
    if base is float:
        return f"a finite number{rule}"
    if _is_list(base):
        return f"one or more integers, each{rule or ' an integer'}"
    if _is_mapping(base):
        return "a mapping of names to values, e.g. '{key: value}'"
    return check.text if check else "a string"


# --------------------------------------------------------------------------- readers

def _a(value: Any) -> str:
    """``a list`` / ``an int``: the type of a value, for a message."""
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


#: an integer option written as text may have at most this many digits (every range is far below)
MAX_INT_DIGITS = 400


def _numeric_text(value: str) -> Decimal:
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        raise _Bad("not a number") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, (bool,)) or type(value).__name__ == "bool_":  # numpy.bool_ too
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _Bad("not true or false")


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise _Bad("a boolean, not an integer")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise _Bad("not finite")
        if not number.is_integer():
            raise _Bad("not a whole number")
        return int(number)
    if isinstance(value, str):
        number = _numeric_text(value)
        if not number.is_finite():
            raise _Bad("not finite")
        if number and number.adjusted() > MAX_INT_DIGITS:  # int("1e1000000") builds a million digits first
            raise _Bad(f"too large (over {MAX_INT_DIGITS} digits)")
        if number != number.to_integral_value():
            raise _Bad("not a whole number")
        return int(number)
    raise _Bad(f"{_a(value)}, not an integer")


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise _Bad("a boolean, not a number")
    if isinstance(value, str):
        _numeric_text(value)  # the same numbers as an integer option accepts
        value = value.strip()
    elif not isinstance(value, numbers.Real):
        raise _Bad(f"{_a(value)}, not a number")
    try:
        number = float(value)
    except (OverflowError, ValueError):
        raise _Bad("not finite") from None
    if not math.isfinite(number):
        raise _Bad("not finite")
    return number


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{_a(value)}, not a string (quote it in YAML)")
    return value


def _as_mapping(value: Any) -> dict:
    if not isinstance(value, dict):
        raise _Bad(f"{_a(value)}, not a mapping")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise _Bad(f"key {bad[0]!r} is not a name")
    return dict(value)


def _read(base: Any, value: Any, check: Check | None) -> Any:
    """``value`` as ``base``; raises :class:`_Bad` (type) — ranges are checked by the caller."""
    if base is bool:
        return _as_bool(value)
    if base is int:
        return _as_int(value)
    if base is float:
        return _as_float(value)
    if _is_mapping(base):
        return _as_mapping(value)
    if _is_list(base):
        (element,) = typing.get_args(base) or (int,)
        items = [value] if isinstance(value, (numbers.Real, str)) and not isinstance(value, bool) else value
        if not isinstance(items, (list, tuple)):
            raise _Bad(f"{_a(value)}, not a list")
        if not items:
            raise _Bad("empty")
        out = []
        for item in items:
            try:
                out.append(_read(element, item, None))
            except _Bad as exc:
                raise _Bad(f"{show(item)} is {exc}") from None
            if check is not None and not check(out[-1]):
                raise _Bad(f"{show(item)} is out of range")
        return out
    return _as_str(value)


def coerce(name: str, hint: Any, value: Any, choices: tuple | None = None, check: Check | None = None,
           label: str | None = None) -> Any:
    """``value`` for the option ``name`` declared as ``hint`` (+ ``choices``/``check``), or a
    one-line :class:`UserError` naming ``--name`` (or ``label``: a Python caller's keyword), the
    value and what is allowed."""
    base, optional = kind_of(hint)
    if label is not None:
        return _with_label(label, name, lambda: coerce(name, hint, value, choices, check))
    allowed = describe(base, choices, check)
    if value is None:
        if optional:
            return None
        raise UserError(f"{flag(name)} needs a value; allowed: {allowed}")
    try:
        out = _read(base, value, check)
    except _Bad as exc:
        raise UserError(f"{flag(name)} {show(value)}: {exc}; allowed: {allowed}") from None
    if choices and out not in choices:
        raise UserError(f"{flag(name)} {show(value)}: unknown; allowed: {allowed}")
    if check is not None and not _is_list(base) and not check(out):
        problem = "out of range" if base in (int, float) else "not allowed"
        raise UserError(f"{flag(name)} {show(value)}: {problem}; allowed: {allowed}")
    if isinstance(out, int) and not isinstance(out, bool) and abs(out) > INT64_MAX:
        raise UserError(f"{flag(name)} {show(value)}: too large; allowed: {allowed}, below 2**63")
    return out


def option(default: Any, help: str, choices: tuple | None = None, check: Check | None = None,
           default_doc: str | None = None):
    """A declared option (a dataclass field): its default, one-line help (``--help`` prints it),
    and the values it allows (``choices`` or a :class:`Check`); ``default_doc`` says in ``--help``
    how a ``None`` default is filled. Run options (:mod:`sparserl.config`) and each method's
    option block (:mod:`sparserl.methods.options`) are declared with it, and
    :func:`coerce` enforces ``choices`` / ``check`` for every source of a value."""
    return field(default=default, metadata={"help": help, "choices": choices, "check": check,
                                            "default_doc": default_doc})


# Allowed values shared by many options (the text is what --help and errors print).
POSITIVE = at_least(1)                                   # counts, sizes, periods
NON_NEGATIVE = at_least(0)
POSITIVE_REAL = at_least(0, strict=True)
UNIT = between(0, 1)                                     # [0, 1]
UNIT_OPEN_TOP = between(0, 1, high_open=True)            # [0, 1): a sparsity of 1 has no weights
UNIT_OPEN_BOTTOM = between(0, 1, low_open=True)          # (0, 1]
