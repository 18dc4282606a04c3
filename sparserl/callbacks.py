"""Callbacks: periodic work and early stopping inside ``learn()`` / ``sparserl train``.

Shaped like Stable-Baselines3's: subclass :class:`Callback` and override what you need, or
pass a plain function ``fn(run) -> bool | None`` (called after every env step). ``run`` is
the :class:`~sparserl.trainer.Trainer`: ``run.step`` (env steps so far),
``run.agent`` (networks, ``run.agent.critic_updates``), ``run.buffer``,
``run.last_eval`` / ``run.best_eval``, ``run.metrics.rows`` (one dict per evaluation),
``run.last_logs`` (latest losses). Returning ``False`` from :meth:`Callback.on_step` stops
training; the run then ends normally (final checkpoint and summary when it has a run
directory).
"""
from __future__ import annotations

from typing import Callable, Iterable, Union


class Callback:
    def on_training_start(self, run) -> None:
        """Before the first env step of this ``learn()`` / ``train()`` call."""

    def on_step(self, run) -> bool:
        """After every env step; return False to stop training."""
        return True

    def on_eval(self, run, row: dict) -> None:
        """After each evaluation, with the ``metrics.csv`` row just written."""

    def on_training_end(self, run) -> None:
        """When the loop ends (planned end or stopped)."""


class FunctionCallback(Callback):
    def __init__(self, fn: Callable):
        self.fn = fn

    def on_step(self, run) -> bool:
        return self.fn(run) is not False


class CallbackList(Callback):
    def __init__(self, callbacks: Iterable[Callback]):
        self.callbacks = list(callbacks)

    def on_training_start(self, run) -> None:
        for c in self.callbacks:
            c.on_training_start(run)

    def on_step(self, run) -> bool:
        keep_going = True
        for c in self.callbacks:
            keep_going = (c.on_step(run) is not False) and keep_going
        return keep_going

    def on_eval(self, run, row: dict) -> None:
        for c in self.callbacks:
            c.on_eval(run, row)

    def on_training_end(self, run) -> None:
        for c in self.callbacks:
            c.on_training_end(run)


class StopTrainingOnReward(Callback):
    """Stop once an evaluation's mean return reaches ``threshold``."""

    def __init__(self, threshold: float):
        self.threshold = float(threshold)
        self.reached = False

    def on_eval(self, run, row: dict) -> None:
        self.reached = self.reached or row["eval_return"] >= self.threshold

    def on_step(self, run) -> bool:
        return not self.reached


CallbackLike = Union[None, Callback, Callable, Iterable]


def as_callback(callback: CallbackLike) -> Callback:
    """``None``, a :class:`Callback`, a function or a list of either -> one Callback.  Anything
    else is one ``UserError`` line (``callback=42`` was a TypeError; ``callback="stop"``, a
    string being iterable, recursed until RecursionError)."""
    from .errors import UserError
    if callback is None:
        return Callback()
    if isinstance(callback, Callback):
        return callback
    if callable(callback):
        return FunctionCallback(callback)
    if isinstance(callback, (list, tuple)):
        return CallbackList(as_callback(c) for c in callback)
    text = " ".join(repr(callback).split())[:60]
    raise UserError(f"callback={text}; allowed: None, a sparserl Callback, a function fn(run) -> bool or a "
                    f"list of them")
