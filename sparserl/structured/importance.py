"""Neuron importance for the hidden neurons of an MLP chain, smoothed with an EMA.

Methods (``method=``):

* ``"activation"``: ``I_j = EMA(E_batch |a_j|) * ||W_{l+1}[:, j]||_2``. The activation statistic
  is smoothed; the outgoing-column norm is read from the current weights when queried.
* ``"fluctuation"``: ``I_j = EMA(std_batch a_j) * ||W_{l+1}[:, j]||_2``: how much neuron ``j``
  *varies* the next layer's input. A neuron whose activation is (nearly) constant carries no
  information: its mean contribution can be folded into the next layer's bias when it is
  pruned (see ``StructuredPruner(compensate=True)``), so ranking by the variation rather than
  the size of the activation keeps the neurons that actually discriminate between states.
* ``"taylor"``: ``I_j = EMA(E_batch |a_j * dL/da_j|)``, the first-order Taylor estimate of the
  loss change when neuron ``j`` is removed.
* ``"magnitude"``: ``I_j = ||(W_l[j, :], b_l[j], W_{l+1}[:, j])||_2``, the norm of the neuron's
  weight group; needs no data and registers no hooks (the magnitude-pruning baseline).

``a_j`` is the activation of hidden neuron ``j``, i.e. ``f(z_j)`` of the Linear output ``z``.
It is read as the *input of the next Linear layer* (a forward hook on ``chain[l + 1]``), which
is exactly ``f(z)`` in an MLP chain and needs no knowledge of ``f``. For ``"taylor"`` a tensor
hook on that input receives ``dL/da`` during ``loss.backward()``. Batch statistics average over
every dimension but the last. Each forward (activation) or backward (taylor) observation
updates the EMA: ``ema <- decay * ema + (1 - decay) * stat`` (the first observation sets it).

Recording is cheap (one abs-mean per layer per pass) and can be switched off:
``tracker.enabled = False``, ``with tracker.recording(False): ...``; by default
(``record_only_with_grad=True``) forward passes run under ``torch.no_grad()`` (target
computation, evaluation, acting) are ignored, so only training forward passes count.

Importance vectors are indexed by the *current* (physical) neurons; :meth:`slice` follows a
shrink. :meth:`normalized` divides by the mean over alive neurons, so a value of 1 is "average".
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from torch import nn

from .surgery import as_index, resolve_chain

__all__ = ["IMPORTANCE_METHODS", "DEFAULT_IMPORTANCE", "NeuronImportance", "group_norm_sq", "normalize_importance"]

IMPORTANCE_METHODS = ("activation", "fluctuation", "taylor", "magnitude")
#: the estimator used when none is named (``StructuredPruner`` and ``--method structured`` alike)
DEFAULT_IMPORTANCE = "fluctuation"


def group_norm_sq(chain: Sequence[nn.Linear], layer: int) -> torch.Tensor:
    """Squared L2 norm of each neuron group of hidden layer ``layer`` (differentiable):
    ``||W_l[j, :]||^2 + b_l[j]^2 + ||W_{l+1}[:, j]||^2``."""
    sq = chain[layer].weight.pow(2).sum(dim=1) + chain[layer + 1].weight.pow(2).sum(dim=0)
    if chain[layer].bias is not None:
        sq = sq + chain[layer].bias.pow(2)
    return sq


def normalize_importance(importance: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
    """``importance / mean(importance[alive])``; returned unchanged if that mean is not positive."""
    ref = importance if alive is None else importance[alive.to(importance.device)]
    if ref.numel() == 0:
        return importance.clone()
    mean = ref.mean()
    if not bool(mean > 0):
        return importance.clone()
    return importance / mean


class NeuronImportance:
    """EMA neuron-importance tracker for the hidden layers of one MLP chain."""

    def __init__(self, chain, method: str = "activation", ema: float = 0.99,
                 record_only_with_grad: bool = True):
        if method not in IMPORTANCE_METHODS:
            raise ValueError(f"importance={method!r}; allowed: {', '.join(IMPORTANCE_METHODS)}")
        if not 0.0 <= float(ema) < 1.0:
            raise ValueError(f"ema={ema}; allowed: 0 <= ema < 1")
        self.chain = resolve_chain(chain)
        self.method = method
        self.decay = float(ema)
        self.record_only_with_grad = bool(record_only_with_grad)
        self.enabled = True
        n_hidden = len(self.chain) - 1
        self._stats: list[torch.Tensor | None] = [None] * n_hidden
        # EMA of the mean activation (all data methods): what a pruned neuron contributed on
        # average, folded into the next layer's bias when it is removed.
        self._means: list[torch.Tensor | None] = [None] * n_hidden
        self._handles: list = []
        if method != "magnitude":
            self.attach()

    # -- hooks -----------------------------------------------------------------------------
    def attach(self) -> None:
        """Register the forward hooks (idempotent)."""
        if self._handles or self.method == "magnitude":
            return
        for layer in range(len(self.chain) - 1):
            nxt = self.chain[layer + 1]
            self._handles.append(nxt.register_forward_hook(self._make_hook(layer, nxt)))

    def detach(self) -> None:
        """Remove all hooks; statistics are kept."""
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextlib.contextmanager
    def recording(self, enabled: bool = True):
        """Context manager that turns recording on/off temporarily."""
        previous = self.enabled
        self.enabled = bool(enabled)
        try:
            yield self
        finally:
            self.enabled = previous

    def _make_hook(self, layer: int, owner: nn.Module):
        def hook(module, args, output):
            # A deep copy of the network (e.g. a target net) copies this hook too: ignore it.
            if module is not owner or not self.enabled or not args:
                return
            a = args[0]
            # Only the network's own training passes count: not no_grad passes (targets,
            # acting, evaluation) and not passes with its weights frozen (a critic evaluated
            # inside the actor's loss, see ``sparserl.algos.base.frozen``).
            if self.record_only_with_grad and (not torch.is_grad_enabled() or not module.weight.requires_grad):
                return
            with torch.no_grad():
                flat = a.detach().reshape(-1, a.shape[-1])
                mean = flat.mean(dim=0)
                self._update(layer, mean, self._means)
                if self.method == "activation":
                    self._update(layer, flat.abs().mean(dim=0))
                elif self.method == "fluctuation":
                    # population std via E[a^2] - E[a]^2: several times faster on CPU than
                    # Tensor.std over the batch dimension, and exact enough for a ranking
                    var = (flat * flat).mean(dim=0) - mean * mean
                    self._update(layer, var.clamp_min_(0.0).sqrt_())
            if self.method == "taylor" and a.requires_grad:
                a_val = a.detach()

                def grad_hook(grad):
                    if self.enabled:
                        with torch.no_grad():
                            stat = (a_val * grad.detach()).abs().reshape(-1, a_val.shape[-1]).mean(dim=0)
                            self._update(layer, stat)
                a.register_hook(grad_hook)
        return hook

    def _update(self, layer: int, stat: torch.Tensor, store: list | None = None) -> None:
        store = self._stats if store is None else store
        prev = store[layer]
        if prev is None or prev.shape != stat.shape:
            store[layer] = stat.float().clone()
        else:
            prev.mul_(self.decay).add_(stat.float(), alpha=1.0 - self.decay)

    # -- queries ---------------------------------------------------------------------------
    def ready(self, layer: int | None = None) -> bool:
        """Whether importance is available (always for magnitude; after data otherwise)."""
        if self.method == "magnitude":
            return True
        layers = range(len(self._stats)) if layer is None else [layer]
        return all(self._stats[i] is not None for i in layers)

    @torch.no_grad()
    def scores(self) -> list[torch.Tensor | None]:
        """Raw importance per hidden layer (current indexing); None where no data yet."""
        out: list[torch.Tensor | None] = []
        for layer in range(len(self.chain) - 1):
            if self.method == "magnitude":
                out.append(group_norm_sq(self.chain, layer).detach().sqrt())
            elif self._stats[layer] is None:
                out.append(None)
            elif self.method in ("activation", "fluctuation"):
                col = self.chain[layer + 1].weight.detach().norm(dim=0)
                out.append(self._stats[layer].to(col.device) * col)
            else:
                out.append(self._stats[layer].clone())
        return out

    def normalized(self, alive: Sequence[torch.Tensor | None] | None = None) -> list[torch.Tensor | None]:
        """Scores divided by the layer mean over alive neurons (``alive`` in current indexing)."""
        scores = self.scores()
        return [None if s is None else
                normalize_importance(s, None if alive is None else alive[i])
                for i, s in enumerate(scores)]

    # -- shrinking & checkpoints -----------------------------------------------------------
    def slice(self, layer: int, keep) -> None:
        """Follow a shrink of hidden layer ``layer`` (keep: BoolTensor or indices)."""
        for store in (self._stats, self._means):
            stat = store[layer]
            if stat is not None:
                idx = as_index(keep, stat.numel()).to(stat.device)
                store[layer] = stat.index_select(0, idx).clone()

    def mean_activation(self, layer: int) -> torch.Tensor | None:
        """EMA of the mean activation of each (current) neuron of hidden layer ``layer``."""
        return self._means[layer]

    def state_dict(self) -> dict:
        return {"method": self.method, "ema": self.decay,
                "stats": [None if s is None else s.detach().cpu().clone() for s in self._stats],
                "means": [None if s is None else s.detach().cpu().clone() for s in self._means]}

    def load_state_dict(self, state: dict) -> None:
        if state.get("method", self.method) != self.method:
            raise ValueError(f"checkpoint importance={state['method']!r}; allowed: {self.method!r}")
        stats = list(state["stats"])
        if len(stats) != len(self._stats):
            raise ValueError(f"checkpoint has {len(stats)} hidden layers; allowed: {len(self._stats)}")
        for i, s in enumerate(stats):
            if s is not None and s.numel() != self.chain[i].out_features:
                raise ValueError(f"importance {i} has {s.numel()} entries; "
                                 f"allowed: {self.chain[i].out_features} (current width)")
        dev = self.chain[0].weight.device
        self._stats = [None if s is None else s.to(dev).float().clone() for s in stats]
        means = list(state.get("means", [None] * len(stats)))
        self._means = [None if s is None else s.to(dev).float().clone() for s in means]
