"""Sparse training and structured pruning for Stable-Baselines3 models, as callbacks.

    from stable_baselines3 import PPO
    from sparserl.integrations.sb3 import SparseTrainingCallback, StructuredPruningCallback, load

    model = PPO("MlpPolicy", "CartPole-v1")
    model.learn(100_000, callback=SparseTrainingCallback("rigl", sparsity=0.9))
    model.save("ppo_sparse")                 # masked weights are zeros: PPO.load keeps them

    model = PPO("MlpPolicy", "CartPole-v1")
    model.learn(100_000, callback=StructuredPruningCallback())
    model.save("ppo_pruned")
    model = load("ppo_pruned", PPO)          # rebuilds the shrunk widths (PPO.load cannot)

Supported: PPO and A2C (``ActorCriticPolicy``), DQN, SAC, TD3 (and subclasses of their policies).
The callbacks drive :class:`sparserl.sparse.SparseTraining` and
:class:`sparserl.structured.StructuredPruner` unchanged; this package only finds SB3's networks
and hooks SB3's training loop without forking it.

How SB3's loop is hooked
------------------------
SB3 computes its losses and calls ``optimizer.step()`` inside ``train()``. At training start
each optimizer of a managed network gets an instance-level ``step`` wrapper (removed again at
training end): ``before`` runs right before the real step, ``after`` right after it; the real
step is skipped when the sparse core asks for it (``skip_step_on_update``). Hence:

* sparse training: ``SparseTraining.before_optimizer_step`` (counts the update, runs topology
  updates on schedule, masks gradients) and ``after_optimizer_step`` (re-zeroes masked weights)
  wrap every step. Gradients of masked weights are in addition zeroed as soon as ``backward()``
  accumulates them (a post-accumulate-grad hook), so SB3's ``clip_grad_norm_`` sees the sparse
  network's gradient; on a RigL update step (and always when ``grad_accumulation > 1``) the
  dense gradient is left in place for the grow criterion and masked by the core at the step.
* structured pruning: the regulariser cannot be added to SB3's loss, so its gradient is added
  right before the step (``penalty().backward()`` accumulates into ``.grad``; the sum of the
  gradients is the gradient of the sum). It therefore comes *after* SB3's gradient clipping:
  the penalty gradient itself is not clipped. ``StructuredPruner.after_optimizer_step`` runs
  after the step and prunes/shrinks on schedule.

Target networks (DQN ``q_net_target``, SAC ``critic_target``, TD3 ``actor_target`` /
``critic_target``) share the online zero pattern: they are masked at training start and after
every topology update. In between nothing else is needed: SB3's Polyak update
``target <- (1 - tau) * target + tau * online`` (hard copy: ``tau = 1``) keeps an entry at
exactly zero when it is zero in both. Structured pruning shrinks them with the online network
(the pruner's mirrors).

Schedules count gradient steps
------------------------------
Every schedule (topology ``delta`` / ``t_end``, ``prune_every`` / ``prune_start`` / ``prune_end``)
counts optimizer steps of the network it acts on, as everywhere in sparserl. The planned total
(``t_end`` of RigL/SET; ``total_updates`` of the pruner) is computed from ``learn()``'s
``total_timesteps`` by :func:`planned_updates`: PPO does ``n_epochs * ceil(n_steps *
n_envs / batch_size)`` steps per rollout, A2C one, off-policy algorithms ``gradient_steps``
(or the collected env steps for ``-1``) per rollout of ``train_freq`` steps after
``learning_starts``; TD3's actor (and its structured schedule) gets ``1 / policy_delay`` of
that. PPO's ``target_kl`` early stop makes the real count smaller (the cosine drop fraction
then does not reach 0). Pass ``planned_updates=`` to override (required for ``train_freq``
counted in episodes).

Which layers
------------
Sparse training masks every ``nn.Linear`` weight of the networks, input and output layers
included (biases, SB3's state-independent ``log_std`` parameter and any non-Linear layer such
as a CNN's convolutions stay dense), as ``sparserl --method rigl`` does. One
:class:`~sparserl.sparse.SparseTraining` per network, each with its own ERK/uniform
allocation over its layers:

=============  ==========================================================================
PPO, A2C       ``actor``: feature extractor (if it has Linear layers), ``mlp_extractor.policy_net``,
               ``action_net``; ``critic``: ``vf_features_extractor`` (only when not shared),
               ``mlp_extractor.value_net``, ``value_net``. Both share SB3's one optimizer.
DQN            ``q``: the Q-network (target: ``q_net_target``)
SAC            ``actor``: feature extractor, ``latent_pi``, ``mu``, ``log_std``; ``critic``: every
               Q-network (target ``critic_target``). A feature extractor shared with the
               critic belongs to the actor (the critic's optimizer excludes it in SB3).
TD3            ``actor`` (target ``actor_target``), ``critic`` (target ``critic_target``)
=============  ==========================================================================

Structured pruning removes hidden neurons of the MLP chains (hidden layers between the feature
extractor's output and the network's output; inputs and outputs are never pruned): PPO/A2C
``actor`` = ``policy_net`` + ``action_net`` and ``critic`` = ``value_net`` chain + ``value_net``,
DQN ``q``, SAC ``actor`` = ``latent_pi`` + ``mu`` (``log_std`` follows every shrink of the last
hidden layer as a mirror; its column is not part of the neuron's regulariser group or
importance), ``critic.qf0``, ``critic.qf1``, ...; TD3 ``actor`` = ``mu`` and the critics.
``use_sde=True`` is not supported by the structured callback (gSDE's noise matrix has the
width of the last hidden layer).

A callback builds its masks / pruners for the model at the first ``learn()`` it is passed to;
passing it to a later ``learn()`` of the same model continues its counters and schedules
(planned from the first call). Use a new callback per training run.

Save / load
-----------
Masked weights are exact zeros, so ``model.save()`` / ``Algo.load()`` keep the sparsity. The
masks themselves are not saved: a new ``SparseTrainingCallback`` on a loaded model (same
sparsity and allocation, ``init="magnitude"``) keeps its non-zero weights, since they are the
largest in magnitude (an active weight that happens to be exactly zero may be swapped). A
shrunk model stores its hidden widths in the attribute ``sparserl_architecture`` that SB3
saves with the model; SB3's own ``load`` rebuilds the default widths and fails on the shapes,
so use :func:`load`, which rebuilds the shrunk shape (optimizer state included).

Package layout
--------------
One module per concern, so each can be read and changed alone: ``budget`` (planned gradient
steps), ``discovery`` (the one place that finds an SB3 model's networks, chains, optimizers and
targets), ``hooks`` (optimizer ``step`` wrapping), ``callbacks`` (the two callbacks), ``io``
(save / load, reading SB3 zips without unpickling), ``export`` (the policy as a ``PolicySpec``).
"""
from __future__ import annotations

try:
    import stable_baselines3  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("sparserl.integrations.sb3 needs Stable-Baselines3: "
                      "pip install 'sparserl[sb3]' (stable-baselines3>=2.3)") from exc

from .budget import planned_gradient_steps, planned_updates
from .callbacks import SPARSE_METHODS, SparseTrainingCallback, StructuredPruningCallback
from .discovery import PrunableChain, SparseNetwork, policy_kind, prunable_chains, sparse_networks
from .export import policy_spec
from .io import (ARCHITECTURE_ATTRIBUTE, algorithm_of_zip, load, load_zip_safely, resize_to_architecture,
                 zip_custom_objects)

__all__ = ["SparseTrainingCallback", "StructuredPruningCallback", "load", "resize_to_architecture",
           "planned_updates", "planned_gradient_steps", "sparse_networks", "prunable_chains", "ARCHITECTURE_ATTRIBUTE",
           "SPARSE_METHODS", "SparseNetwork", "PrunableChain", "policy_kind", "policy_spec",
           "algorithm_of_zip", "load_zip_safely", "zip_custom_objects"]
