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
import json
import math
import os
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .checkpoint import rng_state_from_str, rng_state_to_str
from .algos import make_agent
from .buffers import DynamicCapacity, ReplayBuffer
from .config import TrainConfig, planned_updates, save_yaml
from .envs import check_compatible, get_rng_state, make_env, set_rng_state
from .errors import UserError
from .methods import attach_method, method_summary
from .sparse.flops import count_parameters, forward_flops, layer_flops


class MetricsLog:
    """``metrics.csv``, one row per evaluation; rewritten whole when a new column appears,
    so rows never disagree with the header (the file is small)."""

    def __init__(self, path: Path, rows: list[dict] | None = None):
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
        if self._extend(row) or not self.path.exists():
            self.rewrite()
        else:
            with self.path.open("a", newline="") as fh:
                csv.DictWriter(fh, self.columns).writerow(row)

    def rewrite(self) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


def evaluate(agent, env, episodes: int) -> tuple[float, float]:
    """Mean and std of the deterministic policy's return over full episodes."""
    returns = []
    for _ in range(episodes):
        obs, _ = env.reset()
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume_state: dict | None = None):
        self.cfg = cfg
        self.out = Path(cfg.out)
        torch.set_num_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        self.env = make_env(cfg.env, seed=cfg.seed, allow_import=True)  # TODO(lead): the CLI's trust decision
        check_compatible(cfg.algo, self.env, cfg.env)
        self.eval_env = make_env(cfg.env, seed=cfg.seed + 10_000, allow_import=True)
        self.eval_env.reset(seed=cfg.seed + 10_000)
        widths = resume_state["architecture"] if resume_state else None
        self.agent = make_agent(cfg, self.env.observation_space, self.env.action_space, widths)
        self.total_updates = planned_updates(cfg)
        attach_method(self.agent, cfg, self.total_updates)
        continuous = cfg.algo != "dqn"
        act_space = self.env.action_space
        self.buffer = ReplayBuffer(self.env.observation_space.shape, act_space.shape if continuous else (),
                                   np.float32 if continuous else np.int64,
                                   min(cfg.buffer_size, max(cfg.steps, 1)), seed=cfg.seed,
                                   store_behaviour=continuous)
        self.dynamic = None
        if cfg.dynamic_buffer:
            if not continuous:
                raise UserError("--dynamic-buffer needs a continuous-action algorithm (td3, sac)")
            cap_max = min(cfg.buffer_size if cfg.buffer_max is None else cfg.buffer_max, self.buffer.max_size)
            self.dynamic = DynamicCapacity(self.buffer, min(cfg.buffer_min, cap_max), cap_max, cfg.buffer_threshold,
                                           cfg.buffer_check_every, cfg.policy_distance, cfg.buffer_shrink)
            self.action_scale = ((act_space.high - act_space.low) / 2.0).astype(np.float32)
        self.rng = np.random.default_rng(cfg.seed)
        self.step = 0
        self.episode_actions: list = []
        self.episode_return, self.episode_len = 0.0, 0
        self.recent_returns: list[float] = []
        self.best_eval = -math.inf
        self.last_eval = float("nan")
        self.last_logs: dict = {}
        self.buffer_log: dict = {}
        self.elapsed_before = 0.0
        self.out.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricsLog(self.out / "metrics.csv")
        if resume_state is None:
            self.episode_rng_state = {"seed": cfg.seed}  # how the current episode was reset
            self.obs, _ = self.env.reset(seed=cfg.seed)
        else:
            self._load_resume(resume_state)

    # ------------------------------------------------------------------------------------
    def nstep_now(self) -> int:
        """Delayed multi-step target: n = 1 for the first ``nstep_delay`` updates."""
        return 1 if self.agent.gradient_steps < self.cfg.nstep_delay else self.cfg.nstep

    # ------------------------------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.cfg
        save_yaml(cfg, self.out / "config.yaml")
        writer = self._tensorboard()
        bar = self._progress_bar()
        start_time = time.time() - self.elapsed_before
        last_print_time, last_print_step = time.time(), self.step
        while self.step < cfg.steps:
            if self.step < cfg.learning_starts:
                action = self._random_action()
                behaviour = action
            else:
                action, behaviour = self.agent.explore(self.obs, self.rng, self.step / cfg.steps)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            self.buffer.add(self.obs, action, reward, next_obs, terminated, truncated, behaviour)
            self.episode_actions.append(np.asarray(action).copy())
            self.episode_return += float(reward)
            self.episode_len += 1
            self.obs = next_obs
            if terminated or truncated:
                self.recent_returns = (self.recent_returns + [self.episode_return])[-20:]
                if writer:
                    writer.add_scalar("charts/episodic_return", self.episode_return, self.step)
                self.episode_rng_state = {"state": get_rng_state(self.env)}
                self.obs, _ = self.env.reset()
                self.episode_actions, self.episode_return, self.episode_len = [], 0.0, 0

            if self.step >= cfg.learning_starts and (self.step + 1) % cfg.train_freq == 0:
                for _ in range(cfg.gradient_steps):
                    self.last_logs = self.agent.update(self.buffer.sample(cfg.batch_size, self.nstep_now()))
            self.agent.on_env_step(self.step)
            self.step += 1
            if self.dynamic is not None and self.step >= cfg.learning_starts:
                record = self.dynamic.maybe_update(self.step, self.agent.policy_batch, self.action_scale)
                if record:
                    self.buffer_log = record
                    if writer:
                        for k, v in record.items():
                            writer.add_scalar(f"buffer/{k}", v, self.step)

            if writer and self.last_logs and self.step % 1000 == 0:
                for k, v in self.last_logs.items():
                    writer.add_scalar(k, v, self.step)
            if bar is not None:
                bar.update(1)
            if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps:
                now = time.time()
                sps = (self.step - last_print_step) / max(now - last_print_time, 1e-9)
                last_print_time, last_print_step = now, self.step
                self._evaluate_and_log(writer, start_time, sps, bar)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                self.elapsed_before = time.time() - start_time
                self.save_resume()
        wall = time.time() - start_time
        if bar is not None:
            bar.close()
        if writer:
            writer.close()
        self.elapsed_before = wall
        self.save_resume()
        self.save_checkpoint()
        summary = self.write_summary(wall)
        self.plot()
        return summary

    def _random_action(self):
        space = self.env.action_space
        if self.cfg.algo == "dqn":
            return np.asarray(self.rng.integers(space.n))
        return self.rng.uniform(space.low, space.high).astype(np.float32)

    def _evaluate_and_log(self, writer, start_time: float, sps: float, bar) -> None:
        mean, std = evaluate(self.agent, self.eval_env, self.cfg.eval_episodes)
        self.last_eval = mean
        self.best_eval = max(self.best_eval, mean)
        self.on_evaluation(mean)
        elapsed = time.time() - start_time
        updates = self.agent.gradient_steps
        row = {"step": self.step, "eval_return": mean, "eval_return_std": std,
               "train_return": float(np.mean(self.recent_returns)) if self.recent_returns else float("nan"),
               "updates": updates, "wall_time_s": round(elapsed, 3), "sps": round(sps, 2),
               "updates_per_s": round(updates / max(elapsed, 1e-9), 2), "nstep": self.nstep_now(),
               "train_flops": self.agent.total_train_flops()}
        row.update({k.split("/")[-1] + "_loss" if k.startswith("losses/") else k.replace("/", "_"): v
                    for k, v in self.last_logs.items()})
        row.update(self.buffer_log)
        row.update(method_summary(self.agent, compact=True))
        self.metrics.append(row)
        if writer:
            for k in ("eval_return", "sps", "updates_per_s", "nstep", "train_flops"):
                writer.add_scalar(f"charts/{k}" if k != "eval_return" else "eval/return", row[k], self.step)
        if bar is not None:
            bar.set_postfix(sps=f"{sps:.0f}", eval=f"{mean:.1f}")

    def on_evaluation(self, mean: float) -> None:
        """Prune guard: pruning pauses while the return is far below its best."""
        guard = self.cfg.prune_guard
        if guard is None:
            return
        paused = self.best_eval > -math.inf and mean < self.best_eval - guard * abs(self.best_eval)
        for plugins in self.agent.plugins.values():
            for plugin in plugins:
                if hasattr(plugin, "set_paused"):
                    plugin.set_paused(paused)

    # -- outputs --------------------------------------------------------------------------
    def _tensorboard(self):
        if not self.cfg.tensorboard:
            return None
        from torch.utils.tensorboard import SummaryWriter
        # On resume, drop events logged after the checkpoint (they are about to be redone).
        return SummaryWriter(str(self.out / "tb"), purge_step=self.step if self.step > 0 else None)

    def _progress_bar(self):
        if not self.cfg.progress:
            return None
        from tqdm import tqdm
        return tqdm(total=self.cfg.steps, initial=self.step, desc=f"{self.cfg.algo}/{self.cfg.method} {self.cfg.env}",
                    unit="step", dynamic_ncols=True)

    def write_summary(self, wall: float) -> dict:
        cfg, agent = self.cfg, self.agent
        updates = agent.gradient_steps
        policy = agent.inference_network()
        infer_sparse, infer_dense = forward_flops(policy)[1], agent.dense_reference_flops(policy)
        params = {name: count_parameters(net) for name, net in agent.networks.items()}
        summary = {
            "algo": cfg.algo, "method": cfg.method, "env": cfg.env, "seed": cfg.seed, "steps": cfg.steps,
            "final_eval_return": self.last_eval, "best_eval_return": self.best_eval,
            "wall_time_s": round(wall, 3), "updates": updates,
            "updates_per_s": round(updates / max(wall, 1e-9), 2), "sps": round(cfg.steps / max(wall, 1e-9), 2),
            "params": params,
            "sparsity": {name: 1.0 - c["nonzero"] / c["total"] for name, c in params.items()},
            "flops": {"train_total": agent.total_train_flops(), "train_dense_total": agent.train_flops_dense,
                      "infer_per_action": infer_sparse, "infer_dense_per_action": infer_dense},
            "architecture": agent.architecture(),
            "layers": {name: [row.as_dict() for row in layer_flops(net)] for name, net in agent.networks.items()},
            "nstep_final": self.nstep_now(),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        }
        if self.dynamic is not None:
            summary["buffer"] = {"capacity_final": self.buffer.capacity, "size_final": self.buffer.size,
                                 "policy_distance_last": self.dynamic.last_distance}
        summary.update(method_summary(agent))
        checkpoint.save_json(summary, self.out / "summary.json")
        return summary

    def plot(self) -> None:
        from .plots import learning_curve
        learning_curve(self.metrics.rows, self.out / "learning_curve.png", title=f"{self.cfg.algo}/{self.cfg.method} on {self.cfg.env}")

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """``checkpoint.pt``: what ``sparserl eval`` and deployment need (no replay data)."""
        checkpoint.save({"config": self.cfg.to_dict(), "architecture": self.agent.architecture(),
                         "agent": self.agent.state_dict(), "step": self.step}, self.out / "checkpoint.pt")

    def save_resume(self) -> None:
        state = {
            "config": self.cfg.to_dict(), "architecture": self.agent.architecture(), "step": self.step,
            "agent": self.agent.state_dict(), "buffer": self.buffer.state_dict(),
            "dynamic": self.dynamic.state_dict() if self.dynamic else None,
            "torch_rng": torch.get_rng_state(), "np_rng": rng_state_to_str(self.rng.bit_generator.state),
            "env_episode_rng": rng_state_to_str(self.episode_rng_state),
            "eval_env_rng": rng_state_to_str(get_rng_state(self.eval_env)),
            "episode_actions": torch.as_tensor(np.array(self.episode_actions)) if self.episode_actions else None,
            "episode": {"return": self.episode_return, "len": self.episode_len},
            "recent_returns": list(self.recent_returns), "best_eval": self.best_eval, "last_eval": self.last_eval,
            "last_logs": dict(self.last_logs), "buffer_log": dict(self.buffer_log),
            "metrics_rows": json.dumps(self.metrics.rows), "elapsed": self.elapsed_before,
        }
        checkpoint.save(state, self.out / "resume.pt")

    def _load_resume(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.buffer.load_state_dict(state["buffer"])
        if self.dynamic is not None and state["dynamic"]:
            self.dynamic.load_state_dict(state["dynamic"])
        torch.set_rng_state(state["torch_rng"])
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
                self.obs, *_ = self.env.step(a if self.cfg.algo != "dqn" else int(a))
            self.episode_actions = [a for a in actions.numpy()]
        self.step = int(state["step"])
        self.episode_return, self.episode_len = float(state["episode"]["return"]), int(state["episode"]["len"])
        self.recent_returns = list(state["recent_returns"])
        self.best_eval, self.last_eval = float(state["best_eval"]), float(state["last_eval"])
        self.last_logs, self.buffer_log = dict(state["last_logs"]), dict(state["buffer_log"])
        self.metrics = MetricsLog(self.out / "metrics.csv", json.loads(state["metrics_rows"]))
        self.metrics.rewrite()
        self.elapsed_before = float(state["elapsed"])
