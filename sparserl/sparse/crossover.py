"""Whether the CSR kernels beat a dense matmul: measured on the running machine, cached on disk.

The ``auto`` backend needs, for a layer (shape, density), a batch size and forward-only vs
forward + both gradients, the answer to "is the sparse path faster than computing this layer
densely?".  That depends on the CPU, the BLAS, the thread count and the torch version, so it
is measured here once per (machine, shape, density, batch bucket, mode) and kept in a small
JSON file (``~/.cache/sparserl/csr_crossover.json``; ``$SPARSERL_CACHE_DIR`` or
``$XDG_CACHE_HOME/sparserl`` override the folder) together with the two timings.

Measurement: the layer's dense path and its sparse path at the layer's own density (a fit
over densities was tried first: for small layers the sparse time is dominated by per-call
overhead and the extrapolated crossover was meaningless), alternated call by call, the
minimum of each over a short time budget (robust to other load on the machine).  Whether to
compress a layer at all is decided on a whole training step of it (``"step"``: kernels plus
the optimizer update and the masking a masked layer needs every step), since that is what the
choice changes; which path a compressed layer takes per call, on its kernels alone.  Batch
sizes are bucketed (1, 4, 16, 64, 256 and above), so a run measures a handful of keys per
layer; a 256x256 layer takes a fraction of a second, a 1024x1024 one about a second.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..atomic import atomic_write_text
from .csr import CsrLayout, CsrOperand, csr_linear, feature_major_linear

BUCKETS = (1, 4, 16, 64, 256)
CACHE_FILE = "csr_crossover.json"


def batch_bucket(batch: int) -> int:
    """The largest bucket <= ``batch`` (batches above 256 behave like 256 for this choice)."""
    out = BUCKETS[0]
    for b in BUCKETS:
        if batch >= b:
            out = b
    return out


def cache_dir() -> Path:
    if os.environ.get("SPARSERL_CACHE_DIR"):
        return Path(os.environ["SPARSERL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sparserl"


def machine_id() -> str:
    """CPU model, thread count and torch version: what the answer depends on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}|threads={torch.get_num_threads()}|torch={torch.__version__}"


def _alternating_min(fns: list[Callable[[], None]], budget_s: float = 0.15, min_reps: int = 15,
                     max_reps: int = 300) -> list[float]:
    """Minimum time of each function, calling them in turn so that load changes hit all alike.

    With one torch thread the clock is the process's CPU time: on a shared machine a call
    descheduled half-way would otherwise count the other processes' time (seen: whole
    batches of 16 ms readings for a 50 us call).  With several threads CPU time would add the
    threads up, so wall time is used."""
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    for fn in fns:
        fn()  # warm-up
    best = [float("inf")] * len(fns)
    start, reps = time.perf_counter(), 0
    while reps < min_reps or (time.perf_counter() - start < budget_s and reps < max_reps):
        for k, fn in enumerate(fns):
            t0 = clock()
            fn()
            best[k] = min(best[k], clock() - t0)
        reps += 1
    return best


MODES = ("infer", "train", "step")


def measure(n_out: int, n_in: int, density: float, batch: int, mode: str) -> tuple[float, float]:
    """Seconds per call of a ``(n_out, n_in)`` layer at ``density`` and ``batch``, computed
    densely and through the CSR kernels.  ``mode``: ``"infer"`` forward only; ``"train"``
    forward + both gradients; ``"step"`` a whole training step of the layer: forward, both
    gradients and an Adam update -- for the masked form also masking the gradient, the weight
    and a target copy, as ``SparseTraining`` does every step -- of the dense weight vs the
    non-zero values.  Inputs are feature-major, as inside a chain of such layers."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    training = mode != "infer"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_in, batch, generator=g).t().requires_grad_(training)
    k = min(n_out * n_in, max(1, int(round(density * n_out * n_in))))
    mask = torch.zeros(n_out * n_in, dtype=torch.bool)
    mask[torch.randperm(n_out * n_in, generator=g)[:k]] = True
    mask = mask.view(n_out, n_in)
    operand = CsrOperand(CsrLayout(mask))
    weight = torch.nn.Parameter(torch.randn(n_out, n_in, generator=g) * mask, requires_grad=training)
    values = torch.nn.Parameter(torch.randn(k, generator=g), requires_grad=training)
    bias_d = torch.nn.Parameter(torch.zeros(n_out), requires_grad=training)
    bias_s = torch.nn.Parameter(torch.zeros(n_out), requires_grad=training)
    grad = torch.randn(n_out, batch, generator=g).t()
    mask_f, target = mask.float(), weight.detach().clone()
    opt_d = torch.optim.Adam([weight, bias_d], foreach=True) if mode == "step" else None
    opt_s = torch.optim.Adam([values, bias_s], foreach=True) if mode == "step" else None

    def dense():
        with torch.set_grad_enabled(training):
            y = feature_major_linear(x, weight, bias_d)
            if training:
                y.backward(grad)
        if opt_d is not None:
            with torch.no_grad():
                weight.grad.mul_(mask_f)
                opt_d.step()
                weight.mul_(mask_f)
                target.mul_(mask_f)
            opt_d.zero_grad(set_to_none=True)

    def sparse():
        with torch.set_grad_enabled(training):
            y = csr_linear(x, values, bias_s, operand)
            if training:
                y.backward(grad)
        if opt_s is not None:
            opt_s.step()
            opt_s.zero_grad(set_to_none=True)

    dense_s, sparse_s = _alternating_min([dense, sparse])
    return dense_s, sparse_s


class Crossover:
    """Sparse-vs-dense answers by (shape, density, batch bucket, mode), measured lazily and
    cached on disk.  ``measure`` can be replaced (tests, a fixed policy); ``path=None`` uses
    :func:`cache_dir`."""

    def __init__(self, path: Optional[Path] = None,
                 measure: Callable[[int, int, float, int, str], tuple[float, float]] = measure):
        self.path = Path(path) if path is not None else cache_dir() / CACHE_FILE
        self.measure = measure
        self.machine = machine_id()
        self._memory: dict[str, tuple[float, float]] = {}

    @staticmethod
    def key(n_out: int, n_in: int, density: float, batch: int, mode: str) -> str:
        return f"{n_out}x{n_in}|d{density:.4f}|b{batch_bucket(batch)}|{mode}"

    def timings(self, n_out: int, n_in: int, density: float, batch: int, mode: str) -> tuple[float, float]:
        """``(dense_s, sparse_s)`` for this layer and call (see :func:`measure`), measured
        once per machine."""
        key = self.key(n_out, n_in, density, batch, mode)
        if key not in self._memory:
            stored = self._read().get(self.machine, {})
            if key not in stored:
                stored[key] = list(self.measure(n_out, n_in, round(density, 4), batch_bucket(batch), mode))
                self._write(key, stored[key])
            self._memory[key] = tuple(stored[key])
        return self._memory[key]

    def sparse_faster(self, n_out: int, n_in: int, density: float, batch: int, mode: str) -> bool:
        dense_s, sparse_s = self.timings(n_out, n_in, density, batch, mode)
        return sparse_s < dense_s

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, key: str, value: list) -> None:
        """Merge one entry into the file (re-read first: other runs may have added entries);
        written atomically.  An unwritable cache only costs a re-measurement next time."""
        try:
            data = self._read()
            data.setdefault(self.machine, {})[key] = value
            atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
        except OSError:
            pass


_DEFAULT: Optional[Crossover] = None


def default_crossover() -> Crossover:
    """The process-wide table (one per process; the file is shared between processes)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Crossover()
    return _DEFAULT
