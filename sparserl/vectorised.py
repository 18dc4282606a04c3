"""Many seeds in one process: K runs of one configuration stepped in lockstep, their networks
updated as one stacked program.

Why: every claim of a sparse-training paper rests on a handful of seeds, and one process per
seed pays the per-update fixed costs (Python, autograd, optimizer kernels) K times. Here each
*member* of a group is a complete :class:`~sparserl.trainer.Trainer` of its own seed (its env,
replay buffer, method, schedules, evaluation, run directory and checkpoints are exactly those of
a single run), and only the gradient updates are batched:

* the K agents' minibatches are stacked on a leading agent axis and the algorithm's own update
  code runs once on the stack (the update code takes its means over the last axis, so one loss
  per agent comes out; see :meth:`sparserl.algos.base.Agent.report`);
* each MLP of the stack runs as batched products (``baddbmm``) over the members' weights while
  every member's layers are plain ``Linear`` layers of one shape (dense, or masked-sparse: the
  masked backend keeps inactive weights at exactly 0); otherwise (compressed csr layers,
  structured pruning's hooks or different widths) each member's MLP runs on its slice;
* one backward pass for the group, then each member's plugins (gradient masks, topology updates,
  structured pruning) run on that member alone, and one multi-tensor Adam kernel steps every
  member whose plugins allow it (element-wise, so it equals each member's own ``step()``);
* one multi-tensor kernel for all members' target updates.

Reproducibility contract (tested in tests/test_vectorised.py):

* every random draw of a member comes from that member's own streams: its numpy generators and
  env seeds are those of the single run of its seed, and the torch global generator is swapped
  to the member's own state around everything the member does, so a member's results do not
  depend on the other members (changing one member's seed leaves the others bit-identical);
* a group of one (K = 1) is the single run, bit for bit (same summary, same weights);
* for K > 1 a member is *not* bit-identical to the single run of its seed: the batched product
  rounds differently from the per-agent one (a few ulps per layer), and over thousands of updates
  such differences grow as they do between two machines. The test checks that the first updates
  agree within float tolerance and that every member of a small group learns.

Not yet batched (each member does it on its own): acting in the env (one small forward per
member per step), replay sampling, evaluation. SAC is not supported yet (its temperature is a
separate optimizer per agent).
"""
from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import fields
from typing import Iterator, Sequence

import torch
from torch.optim.adam import adam as adam_kernel
from torch import nn

from .buffers import Batch
from .errors import UserError
from .faults import NonFiniteError
from .networks import MLP

#: config keys that may differ between the members of one group
MEMBER_KEYS = ("seed", "out")
#: algorithms whose update code runs on a stacked batch
SUPPORTED_ALGOS = ("td3", "dqn")


def parse_seeds(text: str) -> list[int]:
    """``"0-7"``, ``"0,3,5"`` or ``"0-3,10"`` as a list of distinct seeds in the given order."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
            raise UserError(f"--seeds {text!r}: bad part {part!r}; allowed: seeds and ranges like 0-7 or 0,3,5")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        seeds.extend(range(lo, hi + 1))
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r} names a seed twice; allowed: distinct seeds")
    return seeds


# -- random streams ------------------------------------------------------------------------
class TorchStreams:
    """One state of torch's global generator per member: ``with streams.use(k):`` runs a block
    on member ``k``'s stream (what that member's single run would have drawn next).

    Swaps are lazy: the generator holds the last used member's state until another member
    needs it, so consecutive blocks of one member cost nothing. Only code inside ``use`` may
    draw from the global generator while a group runs (the group's own code draws nothing)."""

    def __init__(self, states: Sequence[torch.Tensor]):
        self.states = [s.clone() for s in states]
        self.current: int | None = None

    @contextlib.contextmanager
    def use(self, k: int) -> Iterator[None]:
        if self.current != k:
            if self.current is not None:
                self.states[self.current] = torch.get_rng_state()
            torch.set_rng_state(self.states[k])
            self.current = k
        yield

    def state(self, k: int) -> torch.Tensor:
        """Member ``k``'s generator state now."""
        return torch.get_rng_state() if self.current == k else self.states[k]


# -- stacked modules -----------------------------------------------------------------------
class NotVectorisable(UserError):
    """A network the stacked update cannot represent."""


class StackedMLP(nn.Module):
    """K members' MLPs of one role as one module on inputs ``(K, B, in)``.

    The members stay the owners of their parameters (registered here as children, so
    ``parameters()`` and :func:`~sparserl.algos.base.frozen` reach them); the stacked operands
    are built from them at every forward pass, so gradients flow back to each member's own
    tensors and anything that replaces a member's layers (compression, neuron surgery) is seen
    at once. Per layer, when every member's layer is

    * a plain ``Linear`` (dense or masked) of one shape: one batched product (``baddbmm``);
    * a compressed :class:`~sparserl.sparse.csr.SparseLinear` of one shape (csr backend): one
      block-diagonal CSR product over the concatenated values (layout cached across updates);

    activations are kept feature-major (the CSR kernels' fast layout). Anything else (hooks,
    different widths, a layer asked for its dense gradient at a topology update, a target layer
    still holding dropped weights) runs each member's MLP on its slice."""

    def __init__(self, mlps: Sequence[MLP], layout_cache: dict | None = None):
        super().__init__()
        self.members = nn.ModuleList(mlps)
        self._layout_cache = {} if layout_cache is None else layout_cache
        self._seen: list = []
        self._static_plan = self._structure()  # checked against the members' layers at each call

    def _structure(self):
        """(per layer ``"dense"``/``"csr"``, per layer the members' layers), or None when the
        members' structures differ (then they run one by one)."""
        from .sparse.csr import SparseLinear
        members = list(self.members)
        self._seen = self._chains()
        if len(members) < 2:
            return None
        chains = []
        for mlp in members:
            if type(mlp) is not MLP or mlp._forward_hooks or mlp._forward_pre_hooks \
                    or type(mlp.activation) is not nn.ReLU:
                return None
            chains.append(list(mlp._modules["layers"]._modules.values()))
        if len({len(chain) for chain in chains}) != 1:
            return None
        kinds, by_layer = [], []
        for layers in zip(*chains):
            ref = layers[0]
            kind = "dense" if type(ref) is nn.Linear else "csr" if type(ref) is SparseLinear else None
            if kind is None:
                return None
            for layer in layers:
                if (type(layer) is not type(ref) or layer._forward_hooks or layer._forward_pre_hooks
                        or layer.bias is None or layer.in_features != ref.in_features
                        or layer.out_features != ref.out_features):
                    return None
            kinds.append(kind)
            by_layer.append(layers)
        return kinds, by_layer

    def _plan(self):
        """The structure, unless a compressed layer must run on its own this time: asked for its
        dense gradient (a topology update) or, in a target, still holding dropped weights."""
        if not self._current():  # a member's layers were replaced (neuron surgery) since
            self._static_plan = self._structure()
        plan = self._static_plan
        if plan is None:
            return None
        for kind, layers in zip(*plan):
            if kind == "csr" and any(layer.residual is not None or layer.operand.request.active
                                     for layer in layers):
                return None
        return plan

    def _chains(self) -> list:
        """Each member's layer objects now (None for a member that is not an MLP)."""
        return [list(mlp._modules["layers"]._modules.values()) if isinstance(mlp, MLP) else None
                for mlp in self.members]

    def _current(self) -> bool:
        """Whether the plan still describes the members: the same layer objects, and no hook
        added since (structured pruning's importance hooks come and go)."""
        seen = self._chains()
        if len(seen) != len(self._seen) or any(
                a is None or len(a) != len(b) or any(x is not y for x, y in zip(a, b))
                for a, b in zip(seen, self._seen)):
            return False
        return self._static_plan is None or not any(
            layer._forward_hooks or layer._forward_pre_hooks or mlp._forward_hooks or mlp._forward_pre_hooks
            for mlp, layers in zip(self.members, seen) for layer in layers)

    def batchable(self) -> bool:
        return self._plan() is not None

    def _block_operand(self, layers):
        from .sparse.csr import CsrOperand, block_diagonal
        layouts = [layer.layout for layer in layers]
        key = tuple(id(layout) for layout in layouts)
        hit = self._layout_cache.get(key)
        if hit is None or any(a is not b for a, b in zip(hit[0], layouts)):
            if len(self._layout_cache) >= 64:
                self._layout_cache.pop(next(iter(self._layout_cache)))
            hit = self._layout_cache[key] = (layouts, CsrOperand(block_diagonal(layouts)))
        return hit[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self._plan()
        if plan is None:
            return torch.stack([mlp(x[k]) for k, mlp in enumerate(self.members)])
        from .sparse.csr import csr_linear
        k_members, batch = x.shape[0], x.shape[1]
        xt = x.transpose(1, 2)  # (K, in, B): feature-major
        kinds, by_layer = plan
        last = len(kinds) - 1
        for i, (kind, layers) in enumerate(zip(kinds, by_layer)):
            bias = torch.cat([layer.bias for layer in layers])
            if kind == "dense":
                weight = torch.stack([layer.weight for layer in layers])
                yt = torch.baddbmm(bias.view(k_members, -1, 1), weight, xt)
            else:
                operand = self._block_operand(layers)
                values = torch.cat([layer.values for layer in layers])
                rows = xt.reshape(k_members * xt.shape[1], batch)  # the members' inputs stacked
                yt = csr_linear(rows.t(), values, bias, operand).t().reshape(k_members, -1, batch)
            xt = torch.relu(yt) if i < last else yt
        return xt.transpose(1, 2)


def stack_modules(modules: Sequence[nn.Module], index: dict[int, list[nn.Module]],
                  layout_cache: dict | None = None) -> nn.Module:
    """A module of the members' common structure whose MLPs are :class:`StackedMLP` s.

    Non-MLP containers (an actor's tanh head, a twin critic) are shallow copies of the first
    member's that keep its forward code and its buffers (the action box: equal for all members,
    checked) and hold the stacked children. ``index`` gets, for every stacked node, the members'
    corresponding modules (what FLOP counting is charged to)."""
    first = modules[0]
    if isinstance(first, MLP):
        stacked: nn.Module = StackedMLP(modules, layout_cache)
    else:
        if any(p is not None for p in first._parameters.values()):
            raise NotVectorisable(f"{type(first).__name__} holds parameters outside an MLP; allowed in a "
                                  f"vectorised run: networks built of MLPs")
        for name, buf in first._buffers.items():
            if buf is not None and not all(torch.equal(buf, m._buffers[name]) for m in modules[1:]):
                raise NotVectorisable(f"the members' {type(first).__name__}.{name} differ; allowed in a "
                                      f"vectorised run: members of one env and config")
        stacked = copy.copy(first)
        stacked.__dict__ = dict(first.__dict__)
        stacked._parameters = {}
        stacked._modules = {name: (None if child is None else
                                   stack_modules([m._modules[name] for m in modules], index, layout_cache))
                            for name, child in first._modules.items()}
    index[id(stacked)] = list(modules)
    return stacked


def stack_batches(batches: Sequence[Batch]) -> Batch:
    """The members' minibatches on a leading agent axis."""
    values = {}
    for f in fields(Batch):
        parts = [getattr(b, f.name) for b in batches]
        values[f.name] = None if parts[0] is None else torch.stack(parts)
    return Batch(**values)


# -- the stacked agent ---------------------------------------------------------------------
def _adam_compatible(optimizers: Sequence[torch.optim.Optimizer]) -> bool:
    """Whether one multi-tensor Adam call can stand for each optimizer's own ``step()``: plain
    Adam everywhere, one set of hyper-parameters, no step hooks."""
    def settings(group: dict) -> dict:
        return {k: v for k, v in group.items() if k != "params"}

    ref = settings(optimizers[0].param_groups[0])
    for opt in optimizers:
        if type(opt) is not torch.optim.Adam or opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks:
            return False
        if any(settings(group) != ref for group in opt.param_groups):
            return False
    return not ref.get("fused") and not ref.get("capturable") and not ref.get("differentiable")


@torch.no_grad()
def step_together(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """Step several Adam optimizers as one multi-tensor kernel over all their parameters. Adam is
    element-wise, so this equals calling each one's ``step()`` (same state, same values); each
    optimizer keeps its own state (what its member's checkpoint saves)."""
    if len(optimizers) <= 1 or not _adam_compatible(optimizers):
        for opt in optimizers:
            opt.step()
        return
    lists: tuple[list, ...] = ([], [], [], [], [], [])
    has_complex = False
    for opt in optimizers:
        for group in opt.param_groups:
            has_complex |= bool(opt._init_group(group, *lists))
    if not lists[0]:
        return
    g = optimizers[0].param_groups[0]
    beta1, beta2 = g["betas"]
    adam_kernel(*lists, amsgrad=g["amsgrad"], has_complex=has_complex, beta1=beta1, beta2=beta2,
                lr=g["lr"], weight_decay=g["weight_decay"], eps=g["eps"], maximize=g["maximize"],
                foreach=g["foreach"], capturable=False, differentiable=False, fused=None,
                grad_scale=None, found_inf=None, decoupled_weight_decay=g["decoupled_weight_decay"])


class StackedAgentMixin:
    """The parts of :class:`~sparserl.algos.base.Agent` a stack of member agents answers
    differently; the algorithm's own update code runs unchanged on top of it."""

    members: list
    streams: TorchStreams
    stream_ids: list[int]
    stacked_index: dict[int, list[nn.Module]]

    def randn(self, shape) -> torch.Tensor:
        draws = []
        for k in self.stream_ids:
            with self.streams.use(k):
                draws.append(torch.randn(tuple(shape)[1:], device=self.device))
        return torch.stack(draws)

    def report(self, logs: dict) -> dict[str, list[float]]:
        """Each log as one float per member."""
        out = {}
        for name, value in logs.items():
            if torch.is_tensor(value):
                out[name] = [float(v) for v in value.reshape(len(self.members)).tolist()]
            else:
                out[name] = [float(value)] * len(self.members)
        return out

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """One backward pass for the group; each member's plugins on that member alone; one
        Adam kernel for every member whose plugins allow the step."""
        total = loss.sum()
        for k, member in zip(self.stream_ids, self.members):
            if member.plugins.get(name):
                with self.streams.use(k):
                    total = member.penalised(name, total)
        for member in self.members:
            member.optimizers[name].zero_grad(set_to_none=True)
        total.backward()
        stepping = []
        for k, member in zip(self.stream_ids, self.members):
            with self.streams.use(k):
                if member.before_step(name):
                    stepping.append(member.optimizers[name])
        step_together(stepping)
        for k, member in zip(self.stream_ids, self.members):
            with self.streams.use(k):
                member.after_step(name)

    @torch.no_grad()
    def update_target(self, name: str, tau: float) -> None:
        online = [p for m in self.members for p in m.networks[name].parameters()]
        target = [p for m in self.members for p in m.targets[name].parameters()]
        if tau >= 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, tau)
        for k, member in zip(self.stream_ids, self.members):
            if member.plugins.get(name):
                with self.streams.use(k):
                    for plugin in member.plugins[name]:
                        plugin.after_target_update()

    def count_flops(self, module: nn.Module, batch_size: int, passes: int) -> None:
        for member, part in zip(self.members, self.stacked_index[id(module)]):
            member.count_flops(part, batch_size, passes)


_STACKED_CLASSES: dict[type, type] = {}


def stacked_agent(members: Sequence, streams: TorchStreams, stream_ids: Sequence[int],
                  layout_cache: dict | None = None):
    """An agent of the members' class whose networks are the members' networks stacked (see
    :func:`stack_modules`) and whose optimisation seam drives the members (see
    :class:`StackedAgentMixin`). Cheap to build (no tensor is copied): the group builds one per
    update round, so a member's replaced or resized layers or removed members are always current."""
    proto = members[0]
    cls = type(proto)
    if cls not in _STACKED_CLASSES:
        _STACKED_CLASSES[cls] = type(f"Stacked{cls.__name__}", (StackedAgentMixin, cls), {})
    agent = object.__new__(_STACKED_CLASSES[cls])
    agent.__dict__.update(proto.__dict__)
    index: dict[int, list[nn.Module]] = {}
    networks = {n: stack_modules([m.networks[n] for m in members], index, layout_cache) for n in proto.networks}
    targets = {n: stack_modules([m.targets[n] for m in members], index, layout_cache) for n in proto.targets}
    by_identity = {id(proto.networks[n]): networks[n] for n in networks}
    by_identity.update({id(proto.targets[n]): targets[n] for n in targets})
    for attr, value in proto.__dict__.items():
        if isinstance(value, nn.Module):
            if id(value) not in by_identity:
                raise NotVectorisable(f"{cls.__name__}.{attr} is a network outside networks/targets; allowed in "
                                      f"a vectorised run: agents whose modules are all named networks")
            setattr(agent, attr, by_identity[id(value)])
    agent.networks, agent.targets = networks, targets
    agent.members, agent.streams, agent.stream_ids = list(members), streams, list(stream_ids)
    agent.stacked_index = index
    agent.plugins, agent.optimizers = {}, {}
    return agent


# -- the group of runs ---------------------------------------------------------------------
def check_group(cfgs: Sequence) -> None:
    """The members may differ only in their seed and run directory."""
    if not cfgs:
        raise UserError("a vectorised run needs at least one seed")
    if cfgs[0].algo not in SUPPORTED_ALGOS:
        raise UserError(f"--algo {cfgs[0].algo} cannot run vectorised yet; allowed with --seeds: "
                        f"{', '.join(SUPPORTED_ALGOS)}")
    ref = {k: v for k, v in cfgs[0].to_dict().items() if k not in MEMBER_KEYS}
    for cfg in cfgs[1:]:
        other = {k: v for k, v in cfg.to_dict().items() if k not in MEMBER_KEYS}
        differ = sorted(k for k in ref if ref[k] != other.get(k))
        if differ:
            raise UserError(f"the members of a vectorised run differ in {', '.join(differ)}; allowed to differ: "
                            f"{', '.join(MEMBER_KEYS)}")


class GroupTrainer:
    """K :class:`~sparserl.trainer.Trainer` s of one config (different seeds), stepped in
    lockstep with stacked updates (see the module docstring).

    ``resume_states``: one ``resume.pt`` state per member (or None) to continue an interrupted
    group exactly. A member whose loss turns non-finite stops alone (its last good checkpoint is
    kept, as in a single run); the others go on. :meth:`train` returns ``(summaries, failures)``:
    member index -> summary, and member index -> the error line of a member that stopped."""

    def __init__(self, cfgs: Sequence, resume_states: Sequence | None = None, output: str = "none"):
        from .trainer import Trainer
        check_group(cfgs)
        states = list(resume_states) if resume_states is not None else [None] * len(cfgs)
        self.members: list[Trainer] = []
        stream_states = []
        for cfg, state in zip(cfgs, states):
            # each member is built exactly as its single run: torch seeded with its seed (or its
            # saved generator on resume), then its networks, masks and buffers
            member = Trainer(cfg, resume_state=state, output="none")
            member.defer_checkpoints = True
            self.members.append(member)
            stream_states.append(torch.get_rng_state())
        self.streams = TorchStreams(stream_states)
        self.output = output
        self.failures: dict[int, str] = {}
        self._layout_cache: dict = {}  # block-diagonal CSR layouts, kept across update rounds

    def _progress_bar(self, active: list[int]):
        if self.output != "bar":
            return None
        from tqdm import tqdm
        lead = self.members[active[0]]
        cfg = lead.cfg
        return tqdm(total=cfg.steps, initial=lead.step, unit="step", dynamic_ncols=True,
                    desc=f"{cfg.algo}/{cfg.method} {cfg.env} x{len(self.members)} seeds")

    def _stop(self, k: int, error: Exception) -> None:
        member = self.members[k]
        self.failures[k] = str(error)
        if member._writer:
            member._writer.close()

    def _each(self, active: list[int], work) -> list[int]:
        """``work(member)`` for every active member on its own stream; a member whose run
        faults (a non-finite value, an env error) stops alone. Returns the members still active."""
        from .faults import RunFault
        still = []
        for k in active:
            try:
                with self.streams.use(k):
                    work(self.members[k])
                still.append(k)
            except RunFault as exc:
                self._stop(k, exc)
        return still

    def train(self) -> tuple[dict[int, dict], dict[int, str]]:
        members = self.members
        active = self._each(list(range(len(members))), lambda m: m.begin())
        bar = self._progress_bar(active) if active else None
        cfg = members[0].cfg
        while active:
            # the members furthest behind step together: all of them, except after a resume from
            # a group checkpoint that a hard kill cut in half (the others wait until they catch up)
            lag = min(members[k].step for k in active)
            if lag >= cfg.steps:
                break
            due = [k for k in active if members[k].step == lag]
            due = self._each(due, lambda m: m.collect_step())
            if due and members[due[0]].updates_due():
                for _ in range(cfg.gradient_steps):
                    due = self._update(due)
                    if not due:
                        break
                due = self._each(due, lambda m: m.method.after_update(m))
            due = self._each(due, lambda m: m.end_step())
            self._checkpoint(due)
            active = [k for k in active if k not in self.failures]
            if bar is not None and len(due) == len(active):
                bar.update(1)
                if active and cfg.eval_every and members[active[0]].step % cfg.eval_every == 0:
                    evals = [members[k].last_eval for k in active]
                    bar.set_postfix(eval=f"{sum(evals) / len(evals):.1f}", seeds=len(active))
        if bar is not None:
            bar.close()
        summaries: dict[int, dict] = {}

        def finish(member) -> None:
            summaries[members.index(member)] = member.finish()

        self._each(active, finish)
        return summaries, dict(self.failures)

    def _checkpoint(self, due: list[int]) -> None:
        """The members' due resume states, all of them even if Ctrl-C arrives in between (it is
        raised once all are written), so an interrupted group resumes at one step."""
        interrupted = None
        for k in due:
            member = self.members[k]
            if not member.checkpoint_due:
                continue
            member.checkpoint_due = False
            try:
                with self.streams.use(k):
                    member.save_resume()
            except KeyboardInterrupt as exc:
                interrupted = exc
        if interrupted is not None:
            raise interrupted

    def _update(self, active: list[int]) -> list[int]:
        """One stacked update of the active members; returns those still active."""
        members, streams = self.members, self.streams
        batches = []
        for k in active:
            with streams.use(k):
                batches.append(members[k].sample_batch())
        # built per update (no tensor is copied): neuron surgery resizes layers in place, which a
        # kept plan would not see
        group = stacked_agent([members[k].agent for k in active], streams, active, self._layout_cache)
        logs = group.update(stack_batches(batches))
        for member in (members[k] for k in active):  # counters the update code keeps on the agent
            member.agent.load_extra_state(group.extra_state())
        still = []
        for i, k in enumerate(active):
            try:
                members[k].record_update({name: values[i] for name, values in logs.items()})
                still.append(k)
            except NonFiniteError as exc:
                self._stop(k, exc)
        return still
