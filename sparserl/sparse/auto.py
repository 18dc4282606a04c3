"""The ``auto`` execution backend: the CSR kernels where the crossover probe measured them faster.

Apart from :mod:`.csr` (the kernels and compressed layers) because it joins them with
:mod:`.crossover` (which times those kernels): kernels <- probe <- auto, no cycle.
"""
from __future__ import annotations

from .crossover import default_crossover
from .csr import CsrExecution


class AutoExecution(CsrExecution):
    """``auto`` backend: compress a layer only where the CSR kernels are faster on this machine.

    A layer is compressed when, at ``reference_batch``, a whole training step of it (forward,
    both gradients, optimizer update, masking) was measured faster compressed than masked
    (see :mod:`~sparserl.sparse.crossover`); a compressed layer then picks per call, by batch size
    and whether gradients are needed, between the sparse kernels and a dense matmul on its
    reconstructed weight (acting at batch 1 usually goes dense).  Layers denser than
    ``max_density`` are never compressed and never measured.
    """

    name = "auto"
    always_sparse = False

    def __init__(self, crossover=None, reference_batch: int = 256, max_density: float = 0.5):
        super().__init__()
        self._crossover = crossover
        self.reference_batch = int(reference_batch)
        self.max_density = float(max_density)

    @property
    def crossover(self):
        if self._crossover is None:  # measured (or read from the cache) on first use only
            self._crossover = default_crossover()
        return self._crossover

    def compresses(self, shape, nnz):
        density = nnz / (shape[0] * shape[1])
        if density >= 1.0 or density > self.max_density:
            return False
        return self.crossover.sparse_faster(shape[0], shape[1], density, self.reference_batch, "step")

    def use_sparse_kernel(self, layout, batch, training):
        return self.crossover.sparse_faster(layout.n_out, layout.n_in, layout.density, batch,
                                            "train" if training else "infer")
