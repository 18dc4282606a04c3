"""``dense`` (the plain algorithm) and ``tiny`` (a dense net as small as the sparse one)."""
from __future__ import annotations

from .base import Method
from .options import SparsityOptions


class Dense(Method):
    name = "dense"
    summary_line = "the plain algorithm"


class Tiny(Method):
    """The RLx2 paper's 'Tiny' baseline: one hidden width per MLP such that the dense weight
    count matches the sparse network's ((1 - sparsity) x dense weights)."""

    name = "tiny"
    summary_line = "dense, hidden widths narrowed so the weight count matches the sparse one (--actor-sparsity ...)"
    OPTION_BLOCKS = (SparsityOptions, *Method.OPTION_BLOCKS)

    def network_widths(self, cfg, obs_space, act_space) -> dict:
        from ..algos import AGENTS

        probe = AGENTS[cfg.algo](cfg, obs_space, act_space)
        widths = {}
        for path, mlp in probe.mlps().items():
            layers = mlp.linear_layers()
            n_in, n_out, depth = layers[0].in_features, layers[-1].out_features, len(layers) - 1
            target = (1.0 - self.options.sparsity_of(path.split(".")[0])) * sum(l.weight.numel() for l in layers)

            def weights(h: int) -> int:
                return n_in * h + (depth - 1) * h * h + h * n_out

            best = min(range(1, max(cfg.hidden) + 1), key=lambda h: abs(weights(h) - target))
            widths[path] = [best] * depth
        return widths
