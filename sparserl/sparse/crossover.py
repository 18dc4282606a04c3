"""When the CSR kernels beat a dense matmul: measured on the running machine, cached on disk.

The ``auto`` backend needs, for a layer shape, a batch size and forward-only vs
forward+backward, the density below which the sparse kernels are faster than computing the
same layer densely.  That depends on the CPU, the BLAS, the thread count and the torch
version, so it is measured here once per (machine, shape, batch bucket, mode) and kept in a
small JSON file (``~/.cache/sparserl/csr_crossover.json``; ``$SPARSERL_CACHE_DIR`` or
``$XDG_CACHE_HOME/sparserl`` override the folder).

Measurement: the dense time ``T_d`` (independent of density) and the sparse time at two
densities; sparse time is close to linear in the non-zero count, so the crossover is where
the line ``T_s(d)`` meets ``T_d`` (clipped to [0, 1]).  Batch sizes are bucketed (1, 4, 16,
64, 256 and above), so a training run measures at most a few keys per layer shape; a
1024x1024 layer takes about a second to measure, a 256x256 one a fraction of that.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

BUCKETS = (1, 4, 16, 64, 256)
#: densities at which the sparse kernels are timed (the crossover is interpolated between them)
PROBE_DENSITIES = (0.01, 0.1)
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
    """CPU model, thread count and torch version: what the crossover depends on."""
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


def _best_time(fn: Callable[[], None], budget_s: float = 0.05, min_reps: int = 3) -> float:
    """Minimum over repetitions of one call's time (robust to other load on the machine)."""
    fn()  # warm-up
    best, spent, reps = float("inf"), 0.0, 0
    while reps < min_reps or spent < budget_s:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
        if reps >= 200:
            break
    return best


def measure_crossover(n_out: int, n_in: int, batch: int, training: bool) -> float:
    """Density below which the CSR path of a ``(n_out, n_in)`` layer is faster than the dense
    path at this batch size (forward only, or forward + both gradients when ``training``)."""
    from .csr import CsrLayout, csr_linear

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, n_in, generator=g, requires_grad=training)
    bias = torch.zeros(n_out, requires_grad=training)

    def run(forward) -> float:
        def once():
            y = forward()
            if training:
                y.sum().backward()
        with torch.set_grad_enabled(training):
            return _best_time(once)

    weight = torch.randn(n_out, n_in, generator=g, requires_grad=training)
    t_dense = run(lambda: F.linear(x, weight, bias))
    times = []
    for density in PROBE_DENSITIES:
        k = max(1, int(round(density * n_out * n_in)))
        mask = torch.zeros(n_out * n_in, dtype=torch.bool)
        mask[torch.randperm(n_out * n_in, generator=g)[:k]] = True
        layout = CsrLayout(mask.view(n_out, n_in))
        values = torch.randn(k, generator=g, requires_grad=training)
        times.append(run(lambda: csr_linear(x, values, bias, layout)))
    (d1, d2), (t1, t2) = PROBE_DENSITIES, times
    slope = (t2 - t1) / (d2 - d1)
    if slope <= 0:  # overhead-dominated: the sparse time does not grow measurably with density
        return 1.0 if t1 < t_dense else 0.0
    return float(min(1.0, max(0.0, d1 + (t_dense - t1) / slope)))


class Crossover:
    """Crossover densities by (shape, batch bucket, mode), measured lazily and cached on disk.

    ``measure`` can be replaced (tests, or a fixed policy); ``path=None`` uses :func:`cache_dir`.
    """

    def __init__(self, path: Optional[Path] = None,
                 measure: Callable[[int, int, int, bool], float] = measure_crossover):
        self.path = Path(path) if path is not None else cache_dir() / CACHE_FILE
        self.measure = measure
        self.machine = machine_id()
        self._memory: dict[str, float] = {}

    def key(self, n_out: int, n_in: int, batch: int, training: bool) -> str:
        return f"{n_out}x{n_in}|b{batch_bucket(batch)}|{'train' if training else 'infer'}"

    def density(self, n_out: int, n_in: int, batch: int, training: bool) -> float:
        key = self.key(n_out, n_in, batch, training)
        if key not in self._memory:
            stored = self._read().get(self.machine, {})
            if key not in stored:
                stored[key] = float(self.measure(n_out, n_in, batch_bucket(batch), training))
                self._write(key, stored[key])
            self._memory[key] = float(stored[key])
        return self._memory[key]

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, key: str, value: float) -> None:
        """Merge one entry into the file (re-read first: other runs may have added entries);
        written atomically.  An unwritable cache only costs a re-measurement next time."""
        try:
            data = self._read()
            data.setdefault(self.machine, {})[key] = value
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError:
            pass


_DEFAULT: Optional[Crossover] = None


def default_crossover() -> Crossover:
    """The process-wide crossover table (one per process, file shared between processes)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Crossover()
    return _DEFAULT
