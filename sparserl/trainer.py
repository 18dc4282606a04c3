"""The training loop: env steps, updates, evaluation, logs, checkpoints and exact resume.

Exact resume: ``resume.pt`` holds everything that influences the future of a run — agent
(networks, targets, optimizers, plugins), replay buffer, every RNG (torch, numpy, both
envs) and the current episode's actions since its reset.  On resume the training env is
reset with its saved RNG state and the episode is replayed, so the simulator is back in
the exact state it had (for deterministic simulators).  A resumed run therefore equals the
uninterrupted one, parameters and metrics (timings aside).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from . import checkpoint
from .atomic import atomic_write_text
from .algos import make_agent
from .buffers import ReplayBuffer
from .callbacks import as_callback
from .checkpoint import rng_state_from_str, rng_state_to_str
from .config import TrainConfig, planned_updates, save_yaml
from .devices import resolve_device
from .envs import check_compatible, get_rng_state, make_env, prepare_env, set_rng_state
from .errors import UserError
from .evaluation import EvalResult, evaluate  # noqa: F401 (also importable from here)
from .faults import assert_finite_state, check_finite_losses, checked_env_reset, checked_env_step, env_reset
from .methods import make_method
from .model_file import model_state, spaces_record
from .sparse.flops import count_parameters, forward_flops, layer_flops


def method_scalars(method_row: dict, buffer_log: dict) -> dict:
    """TensorBoard tags of a method's metrics columns: weight sparsity under ``sparse/``, neurons
    alive and the pruning diagnostics under ``structured/`` (the names the SB3 callbacks use);
    the dynamic buffer's columns are left out (logged as ``buffer/*`` at every check)."""
    out = {}
    for key, value in method_row.items():
        if key in buffer_log or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[("sparse/" if key.startswith("sparsity") else "structured/") + key] = number
    return out


class MetricsLog:
    """``metrics.csv``, one row per evaluation; rewritten whole when a new column appears,
    so rows never disagree with the header (the file is small)."""

    def __init__(self, path: Path | None, rows: list[dict] | None = None):
        self.path, self.rows = path, list(rows or [])
        self.columns: list[str] = []
        for row in self.rows:
            self._extend(row)

    def _extend(self, row: dict) -> bool:
        new = [k for k in row if k not in self.columns]
        self.columns.extend(new)
        return bool(new)

    def append(self, row: dict) -> None:
        self.rows.append(row)
        if self.path is None:  # in-memory run (Python API without log_dir)
            self._extend(row)
            return
        if self._extend(row) or not self.path.exists():
            self.rewrite()
        else:
            with self.path.open("a", newline="") as fh:
                csv.DictWriter(fh, self.columns).writerow(row)

    def rewrite(self) -> None:
        if self.path is None:
            return
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, text.getvalue())


def rng_streams(seed: int, count: int) -> list[np.random.Generator]:
    """Independent numpy generators for the parts of a run (exploration, replay sampling):
    spawned from one seed so that no two parts draw the same stream."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(count)]


#: What a ``resume.pt`` holds (:meth:`Trainer.save_resume`); ``--resume`` refuses a file without them.
RESUME_KEYS = ("config", "architecture", "step", "agent", "buffer", "method", "torch_rng", "np_rng",
               "env_episode_rng", "eval_env_rng", "episode_actions", "episode", "recent_returns", "best_eval",
               "last_eval", "last_logs", "metrics_rows", "elapsed")


class Trainer:
    """One training run: the loop, evaluation, logs, checkpoints and exact resume.

    ``env``: an already built env (the Python API passes the user's instance); otherwise
    ``cfg.env`` is made. ``write_files=False`` keeps everything in memory (no run
    directory). ``callbacks``: see :mod:`sparserl.callbacks`. ``allow_env_import``: may a
    ``module:Class`` env id be imported (False when the id came from a stored run, not the user).
    ``output``: ``bar``, ``lines`` (one line per evaluation) or ``none`` (see
    :mod:`sparserl.terminal`; ``sparserl train`` picks with :func:`~sparserl.terminal.choose_output`);
    ``None``: ``bar`` with ``cfg.progress``, else nothing. ``tensorboard_dir``: write TensorBoard
    events there instead of ``OUT/tb`` (the Python API's ``tensorboard_log``; also without a run
    directory).

    ``set_process_state``: the process-wide state the trainer changes, all of it torch's and
    nothing else: ``torch.set_num_threads(cfg.torch_threads)``, ``torch.manual_seed(cfg.seed)``
    and, on resume, the saved global torch RNG state (``torch.set_rng_state``, and the CUDA
    generator's on a GPU). Seeding torch's *global* generator is what makes a fixed ``--seed``
    reproducible: network initialisation and torch-side sampling in the updates (TD3's target
    noise, SAC's actions) draw from it, so moving them to a private generator would change
    every fixed-seed result. ``False`` leaves all of this to the caller
    (a program that trains next to other torch work and manages threads and seeds itself): a
    run is then reproducible only if the caller seeds torch the same way, and a resume is exact
    only if the caller restores the saved ``torch_rng``. The CLI and the Python API use the default.
    """

    def __init__(self, cfg: TrainConfig, resume_state: dict | None = None, env=None, eval_env=None,
                 write_files: bool = True, callbacks=None, allow_env_import: bool = True,
                 output: str | None = None, tensorboard_dir: str | Path | None = None,
                 set_process_state: bool = True):
        self.cfg = cfg
        self.output = output
        self.tensorboard_dir = None if tensorboard_dir is None else Path(tensorboard_dir)
        self.out = Path(cfg.out) if write_files else None
        self.set_process_state = set_process_state
        if set_process_state:
            torch.set_num_threads(cfg.torch_threads)
            torch.manual_seed(cfg.seed)  # network initialisation and torch-side sampling (documented: --seed)
        self.device = resolve_device(cfg.device)
        self.env = prepare_env(env, cfg.env) if env is not None else make_env(cfg.env, seed=cfg.seed, kwargs=cfg.env_kwargs, allow_import=allow_env_import)
        check_compatible(cfg.algo, self.env, cfg.env)
        obs_space, act_space = self.env.observation_space, self.env.action_space
        # the action space decides how actions are counted, stored and drawn, not the algorithm's name
        self.discrete_actions = isinstance(act_space, gym.spaces.Discrete)
        continuous = not self.discrete_actions
        from .resources import check_memory  # with the env's real sizes, before anything is allocated
        check_memory(cfg, int(np.prod(obs_space.shape)),
                     int(act_space.n) if self.discrete_actions else int(np.prod(act_space.shape)))
        self.eval_env = (prepare_env(eval_env, cfg.env) if eval_env is not None
                         else make_env(cfg.env, seed=cfg.seed + 10_000, kwargs=cfg.env_kwargs,
                                  allow_import=allow_env_import) if env is None
                         else self._copy_env(env))
        env_reset(self.eval_env, 0, "the evaluation env's", seed=cfg.seed + 10_000)
        self.method = make_method(cfg)
        widths = resume_state["architecture"] if resume_state else self.method.network_widths(cfg, obs_space, act_space)
        self.agent = make_agent(cfg, obs_space, act_space, widths, self.device)
        self.total_updates = planned_updates(cfg)
        self.method.attach(self.agent, self.total_updates)
        self.rng, buffer_rng = rng_streams(cfg.seed, 2)
        self.buffer = ReplayBuffer(obs_space.shape, act_space.shape if continuous else (),
                                   np.float32 if continuous else np.int64,
                                   min(cfg.buffer_size, max(cfg.steps, 1)), rng=buffer_rng,
                                   store_behaviour=continuous, device=self.device)
        self.method.on_start(self)
        self.callback = as_callback(callbacks)
        self.step = 0
        self.episode_actions: list = []
        self.episode_return, self.episode_len = 0.0, 0
        self.recent_returns: list[float] = []
        self.best_eval = -math.inf
        self.last_collision_rate: float | None = None
        self.last_eval = float("nan")
        self.last_logs: dict = {}
        self.elapsed_before = 0.0
        self.stopped_by_callback = False
        #: a group (:mod:`sparserl.vectorised`) saves its members' resume states together: a due
        #: checkpoint then only sets ``checkpoint_due``
        self.defer_checkpoints, self.checkpoint_due = False, False
        self._writer = self._bar = None  # made by begin()
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricsLog(self.out / "metrics.csv" if self.out is not None else None)
        if resume_state is None:
            self.episode_rng_state = {"seed": cfg.seed}  # how the current episode was reset
            self.obs, _ = checked_env_reset(self.env, 0, seed=cfg.seed)
        else:
            self._load_resume(resume_state)

    @staticmethod
    def _copy_env(env):
        """A separate evaluation env for a user-given instance: a fresh one from its
        registered spec, else a deep copy."""
        import copy as _copy

        import gymnasium as gym
        if env.spec is not None:
            try:
                return prepare_env(gym.make(env.spec), env.spec.id)
            except gym.error.Error:
                pass
        return prepare_env(_copy.deepcopy(env), "env")

    # ------------------------------------------------------------------------------------
    def nstep_now(self) -> int:
        """Delayed multi-step target: asked of the method (n = 1 for the first ``nstep_delay`` updates)."""
        return self.method.nstep(self.agent.critic_updates)

    def progress(self) -> float:
        """Fraction of the planned run done (epsilon schedules); stays 1 past the plan."""
        return min(1.0, self.step / self.cfg.schedule_steps)

    # ------------------------------------------------------------------------------------
    def train(self) -> dict:
        """Run to ``cfg.steps`` (or until a callback stops it); returns the summary. The loop is
        split into the pieces below so that a stacked group of runs (:mod:`sparserl.vectorised`)
        drives each of its members through the very same steps, replacing only the updates."""
        cfg = self.cfg
        self.begin()
        while self.step < cfg.steps:
            self.collect_step()
            if self.updates_due():
                for _ in range(cfg.gradient_steps):
                    self.record_update(self.agent.update(self.sample_batch()))
                self.method.after_update(self)
            if self.end_step():
                self.stopped_by_callback = True
                break
        return self.finish()

    def begin(self) -> None:
        """Before the first step of a (resumed) run: config file, logs, progress bar, clock."""
        if self.out is not None:
            save_yaml(self.cfg, self.out / "config.yaml")
        self._writer = self._tensorboard()
        self._bar = self._progress_bar()
        self._start_time = time.time() - self.elapsed_before
        self._last_print_time, self._last_print_step = time.time(), self.step
        self.callback.on_training_start(self)

    def collect_step(self) -> None:
        """Act once in the training env and store the transition (episode ends handled)."""
        if self.step < self.cfg.learning_starts:
            action = self._random_action()
            behaviour = action
        else:
            action, behaviour = self.agent.explore(self.obs, self.rng, self.progress())
        next_obs, reward, terminated, truncated, _ = checked_env_step(self.env, action, self.step)
        self.buffer.add(self.obs, action, reward, next_obs, terminated, truncated, behaviour)
        self.episode_actions.append(np.asarray(action).copy())
        self.episode_return += float(reward)
        self.episode_len += 1
        self.obs = next_obs
        if terminated or truncated:
            self.recent_returns = (self.recent_returns + [self.episode_return])[-20:]
            if self._writer:
                self._writer.add_scalar("charts/episodic_return", self.episode_return, self.step)
            self.episode_rng_state = {"state": get_rng_state(self.env)}
            self.obs, _ = checked_env_reset(self.env, self.step)
            self.episode_actions, self.episode_return, self.episode_len = [], 0.0, 0

    def updates_due(self) -> bool:
        """Whether this env step is followed by ``gradient_steps`` updates."""
        return self.step >= self.cfg.learning_starts and (self.step + 1) % self.cfg.train_freq == 0

    def sample_batch(self):
        """One minibatch for the next update (n-step windows at the method's current n)."""
        return self.buffer.sample(self.cfg.batch_size, self.nstep_now(), self.agent.uses_mid_obs)

    def record_update(self, logs: dict) -> None:
        """Keep one update's scalar logs; a non-finite loss stops the run here, before anything
        is saved (:class:`~sparserl.faults.NonFiniteError`)."""
        self.last_logs = logs
        check_finite_losses(self.last_logs, self.agent.critic_updates)

    def end_step(self) -> bool:
        """After the step's updates: clocks, method hooks, logs, evaluation, checkpoints.
        Returns True when a callback asked to stop."""
        cfg, writer = self.cfg, self._writer
        self.agent.on_env_step(self.step)
        self.step += 1
        record = self.method.after_env_step(self, self.step)
        if record and writer:
            for k, v in record.items():
                writer.add_scalar(k, v, self.step)

        if writer and self.last_logs and self.step % 1000 == 0:
            for k, v in self.last_logs.items():
                writer.add_scalar(k, v, self.step)
        if self._bar is not None:
            self._bar.update(1)
        if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps:
            now = time.time()
            sps = (self.step - self._last_print_step) / max(now - self._last_print_time, 1e-9)
            self._last_print_time, self._last_print_step = now, self.step
            self._evaluate_and_log(writer, self._start_time, sps, self._bar)
        if (self.out is not None and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0
                and self.step < cfg.steps):
            self.elapsed_before = time.time() - self._start_time
            if self.defer_checkpoints:
                self.checkpoint_due = True
            else:
                self.save_resume()
        return self.callback.on_step(self) is False

    def finish(self) -> dict:
        """Close the logs and write the final artifacts; returns the summary."""
        wall = time.time() - self._start_time
        if self._bar is not None:
            self._bar.close()
        if self._writer:
            self._writer.close()
        self.elapsed_before = wall
        self.callback.on_training_end(self)
        if self.out is None:
            return self.build_summary(wall)
        # Final artifacts in an order that a kill at any instant leaves resumable or complete:
        # resume.pt (at the final step), checkpoint.pt, the plot, and summary.json last
        # (`--resume` of a run at its final step without a summary only writes these again).
        self.save_resume()
        self.save_checkpoint()
        self.plot()
        return self.write_summary(wall)

    def _random_action(self):
        space = self.env.action_space
        if self.discrete_actions:
            return np.asarray(self.rng.integers(space.n))
        return self.rng.uniform(space.low, space.high).astype(np.float32)

    def _evaluate_and_log(self, writer, start_time: float, sps: float, bar) -> None:
        episodes = self.cfg.eval_episodes
        if self.step == self.cfg.steps and self.cfg.final_eval_episodes:
            episodes = self.cfg.final_eval_episodes
        result = evaluate(self.agent, self.eval_env, episodes, self.step)
        mean, std, collision_rate = result.mean, result.std, result.collision_rate
        self.last_eval, self.last_collision_rate = mean, collision_rate
        self.best_eval = max(self.best_eval, mean)
        self.method.after_eval(self, mean, self.best_eval)
        elapsed = time.time() - start_time
        updates = self.agent.critic_updates
        row = {"step": self.step, "eval_return": mean, "eval_return_std": std,
               "train_return": float(np.mean(self.recent_returns)) if self.recent_returns else float("nan"),
               "updates": updates, "wall_time_s": round(elapsed, 3), "sps": round(sps, 2),
               "updates_per_s": round(updates / max(elapsed, 1e-9), 2), "nstep": self.nstep_now(),
               "train_flops": self.agent.total_train_flops()}
        row.update({k.split("/")[-1] + "_loss" if k.startswith("losses/") else k.replace("/", "_"): v
                    for k, v in self.last_logs.items()})
        if collision_rate is not None:
            row["eval_collision_rate"] = collision_rate
        method_row = self.method.metrics(self.agent)
        row.update(method_row)
        self.metrics.append(row)
        self.callback.on_eval(self, row)
        if writer:
            for k in ("eval_return", "sps", "updates_per_s", "nstep", "train_flops"):
                writer.add_scalar(f"charts/{k}" if k != "eval_return" else "eval/return", row[k], self.step)
            if collision_rate is not None:
                writer.add_scalar("eval/collision_rate", collision_rate, self.step)
            for tag, value in method_scalars(method_row, self.method.buffer_log).items():
                writer.add_scalar(tag, value, self.step)
        if bar is not None:  # neurons alive per pruned MLP too: pruning is visible while it happens
            alive = {k[len("alive_"):]: v for k, v in method_row.items() if k.startswith("alive_")}
            bar.set_postfix(sps=f"{sps:.0f}", eval=f"{mean:.1f}", **alive)
        elif self._output_mode() == "lines":
            from .terminal import eval_line
            neurons = self.method.summary(self.agent, self.buffer).get("neurons") if method_row else None
            print(eval_line(row, self.cfg.steps, sps, neurons), flush=True)

    # -- outputs --------------------------------------------------------------------------
    def _tensorboard(self):
        if self.tensorboard_dir is not None:  # asked for by name: written even without a run directory
            from torch.utils.tensorboard import SummaryWriter
            return SummaryWriter(str(self.tensorboard_dir), purge_step=self.step if self.step > 0 else None)
        if not self.cfg.tensorboard or self.out is None:
            return None
        from torch.utils.tensorboard import SummaryWriter
        # On resume, drop events logged after the checkpoint (they are about to be redone).
        return SummaryWriter(str(self.out / "tb"), purge_step=self.step if self.step > 0 else None)

    def _output_mode(self) -> str:
        """``bar``, ``lines`` or ``none``: the constructor's choice, else (a Trainer used as a
        library) a bar with ``progress`` and nothing without; the CLI and the API choose."""
        if self.output is not None:
            return self.output
        return "bar" if self.cfg.progress else "none"

    def _progress_bar(self):
        if self._output_mode() != "bar":
            return None
        from tqdm import tqdm
        return tqdm(total=self.cfg.steps, initial=self.step, desc=f"{self.cfg.algo}/{self.cfg.method} {self.cfg.env}",
                    unit="step", dynamic_ncols=True)

    def write_summary(self, wall: float) -> dict:
        summary = self.build_summary(wall)
        checkpoint.save_json(summary, self.out / "summary.json")
        return summary

    def build_summary(self, wall: float) -> dict:
        cfg, agent = self.cfg, self.agent
        updates = agent.critic_updates
        policy = agent.inference_network()
        infer_sparse, infer_dense = forward_flops(policy)[1], agent.dense_reference_flops(policy)
        params = {name: count_parameters(net) for name, net in agent.networks.items()}
        summary = {
            "algo": cfg.algo, "method": cfg.method, "env": cfg.env, "seed": cfg.seed, "steps": self.step,
            "final_eval_return": self.last_eval, "best_eval_return": self.best_eval,
            **({"final_collision_rate": self.last_collision_rate} if self.last_collision_rate is not None else {}),
            "wall_time_s": round(wall, 3), "updates": updates,
            "updates_per_s": round(updates / max(wall, 1e-9), 2), "sps": round(self.step / max(wall, 1e-9), 2),
            "params": params,
            "sparsity": {name: 1.0 - c["nonzero"] / c["total"] for name, c in params.items()},
            "flops": {"train_total": agent.total_train_flops(), "train_dense_total": agent.train_flops_dense,
                      "infer_per_action": infer_sparse, "infer_dense_per_action": infer_dense},
            "architecture": agent.architecture(),
            "layers": {name: [row.as_dict() for row in layer_flops(net)] for name, net in agent.networks.items()},
            "nstep_final": self.nstep_now(),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                        "device": str(self.device)},
        }
        summary.update(self.method.summary(agent, self.buffer))
        return summary

    def plot(self) -> None:
        from .plots import learning_curve
        learning_curve(self.metrics.rows, self.out / "learning_curve.png", title=f"{self.cfg.algo}/{self.cfg.method} on {self.cfg.env}")

    # -- checkpoints ----------------------------------------------------------------------
    def assert_finite(self) -> None:
        """Never let a poisoned state overwrite the last good checkpoint."""
        assert_finite_state({**self.agent.networks, **{f"{k}_target": v for k, v in self.agent.targets.items()}},
                            self.step, self.agent.optimizers)

    def spaces_record(self) -> dict:
        from .envs import original_observation_space
        return spaces_record(original_observation_space(self.env), self.env.action_space)

    def save_checkpoint(self) -> None:
        """``checkpoint.pt``: what ``sparserl eval``, ``sparserl.load`` and deployment need (no
        replay data); the same format as ``model.save``."""
        self.assert_finite()
        state = model_state(self.cfg, self.agent, self.spaces_record())
        state["step"] = self.step
        checkpoint.save(state, self.out / "checkpoint.pt")

    def save_resume(self) -> None:
        self.assert_finite()
        state = {  # keys: RESUME_KEYS
            "config": self.cfg.to_dict(), "architecture": self.agent.architecture(), "step": self.step,
            "agent": checkpoint.compact(self.agent.state_dict()), "buffer": self.buffer.state_dict(), "method": self.method.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None, "np_rng": rng_state_to_str(self.rng.bit_generator.state),
            "env_episode_rng": rng_state_to_str(self.episode_rng_state),
            "eval_env_rng": rng_state_to_str(get_rng_state(self.eval_env)),
            "episode_actions": torch.as_tensor(np.array(self.episode_actions)) if self.episode_actions else None,
            "episode": {"return": self.episode_return, "len": self.episode_len},
            "recent_returns": list(self.recent_returns), "best_eval": self.best_eval, "last_eval": self.last_eval,
            "last_collision_rate": self.last_collision_rate,
            "last_logs": dict(self.last_logs),
            "metrics_rows": json.dumps(self.metrics.rows), "elapsed": self.elapsed_before,
        }
        checkpoint.save(state, self.out / "resume.pt")

    def _check_counters(self, state: dict) -> None:
        """The stored counters, checked before any is used: a hand-edited ``step: -50`` or an
        episode length that disagrees with the stored actions would silently replay or
        double-count steps (the content hash catches damage; an edited file re-saved with a
        fresh hash still has to make sense)."""
        def whole(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 0

        step, episode = state["step"], state["episode"]
        actions = state["episode_actions"]
        n_actions = 0 if actions is None else int(actions.shape[0]) if torch.is_tensor(actions) and actions.ndim else -1
        ep_len = episode.get("len") if isinstance(episode, dict) else None
        n_updates = (state["agent"].get("n_updates") if isinstance(state["agent"], dict) else None) or {}
        problems = []
        if not whole(step) or step > self.cfg.steps:
            problems.append(f"step {step!r} (allowed: 0..{self.cfg.steps})")
        if not whole(ep_len) or ep_len != n_actions or (whole(step) and ep_len > step):
            problems.append(f"episode length {ep_len!r} with {n_actions} stored actions (allowed: equal, <= step)")
        if not isinstance(state["elapsed"], (int, float)) or not math.isfinite(state["elapsed"]) \
                or state["elapsed"] < 0:
            problems.append(f"elapsed {state['elapsed']!r} (allowed: a finite number >= 0)")
        bad_updates = {k: v for k, v in dict(n_updates).items() if not whole(v)}
        if bad_updates:
            problems.append(f"update counts {bad_updates} (allowed: integers >= 0)")
        if problems:
            raise UserError(f"resume state of {self.cfg.out}: stored {'; '.join(problems)}; the file was edited or "
                            f"damaged, so the run cannot continue from it exactly")

    def _load_resume(self, state: dict) -> None:
        self._check_counters(state)
        self.agent.load_state_dict(state["agent"])
        self.buffer.load_state_dict(state["buffer"])
        self.method.load_state_dict(state["method"])
        if self.set_process_state:
            torch.set_rng_state(state["torch_rng"])
            if self.device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.rng.bit_generator.state = rng_state_from_str(state["np_rng"])
        set_rng_state(self.eval_env, rng_state_from_str(state["eval_env_rng"]))
        # Put the training env back in its exact state: same reset RNG, same actions.
        episode_rng = rng_state_from_str(state["env_episode_rng"])
        if "seed" in episode_rng:
            self.obs, _ = self.env.reset(seed=episode_rng["seed"])
        else:
            set_rng_state(self.env, episode_rng["state"])
            self.obs, _ = self.env.reset()
        self.episode_rng_state = episode_rng
        actions = state["episode_actions"]
        if actions is not None:
            for a in actions.numpy():
                self.obs, *_ = self.env.step(int(a) if self.discrete_actions else a)
            self.episode_actions = [a for a in actions.numpy()]
        self.step = int(state["step"])
        self.episode_return, self.episode_len = float(state["episode"]["return"]), int(state["episode"]["len"])
        self.recent_returns = list(state["recent_returns"])
        self.best_eval, self.last_eval = float(state["best_eval"]), float(state["last_eval"])
        self.last_logs = dict(state["last_logs"])
        self.metrics = MetricsLog(self.metrics.path, json.loads(state["metrics_rows"]))
        # absent in files written before the collision rate existed: the last logged row still has it
        rate = state.get("last_collision_rate",
                         (self.metrics.rows[-1] if self.metrics.rows else {}).get("eval_collision_rate"))
        self.last_collision_rate = None if rate is None else float(rate)
        self.metrics.rewrite()
        self.elapsed_before = float(state["elapsed"])
