"""The Python API, shaped like Stable-Baselines3 so its users need not relearn anything::

    from sparserl import TD3
    model = TD3("Hopper-v5", method="rlx2", seed=0, actor_sparsity=0.98, critic_sparsity=0.95)
    model.learn(100_000, progress_bar=True)
    action, _ = model.predict(obs, deterministic=True)
    model.save("hopper_rlx2.pt")
    model = TD3.load("hopper_rlx2.pt")          # or sparserl.load(path_or_run_dir)

Every keyword is a ``sparserl train`` option (``batch_size`` is ``--batch-size``) and goes
through the same :func:`sparserl.config.config_from_options` as the CLI, so
``TD3(env, method="rlx2")`` and ``sparserl train --algo td3 --method rlx2`` resolve to the
same config. Nothing global changes silently: the process's torch thread count is set
from ``torch_threads`` (default 1) and torch's global RNG is seeded from ``seed`` when
``learn`` builds the run, exactly as the CLI does; importing sparserl changes nothing.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Union

import numpy as np

from . import checkpoint
from .config import TrainConfig, config_from_options
from .errors import UserError

if TYPE_CHECKING:
    from .trainer import EvalResult

MODEL_FORMAT = "sparserl-model/1"


def _env_label(env) -> str:
    """What ``config.env`` says about a user-given Env instance (for logs and summaries)."""
    if env.spec is not None and env.spec.id:
        return env.spec.id
    cls = type(env.unwrapped)
    return f"{cls.__module__}:{cls.__name__}"


def spaces_record(obs_space, act_space) -> dict:
    """The observation/action spaces as plain data, stored with every saved model so that
    loading needs no environment (and imports no environment module). ``obs_space`` is the
    env's own (before flattening), so ``predict`` accepts observations of that shape."""
    import gymnasium as gym
    record: dict = {"obs_shape": list(obs_space.shape),
                    "obs_low": np.asarray(obs_space.low, np.float32).ravel().tolist(),
                    "obs_high": np.asarray(obs_space.high, np.float32).ravel().tolist()}
    if isinstance(act_space, gym.spaces.Discrete):
        record["action"] = {"type": "discrete", "n": int(act_space.n)}
    else:
        record["action"] = {"type": "box", "shape": list(act_space.shape),
                            "low": np.asarray(act_space.low, np.float32).ravel().tolist(),
                            "high": np.asarray(act_space.high, np.float32).ravel().tolist()}
    return record


def spaces_from_record(record: dict):
    import gymnasium as gym
    n_obs = int(np.prod(record["obs_shape"]))
    obs_space = gym.spaces.Box(np.asarray(record["obs_low"], np.float32).reshape(n_obs),
                               np.asarray(record["obs_high"], np.float32).reshape(n_obs), dtype=np.float32)
    act = record["action"]
    if act["type"] == "discrete":
        return obs_space, gym.spaces.Discrete(act["n"])
    shape = tuple(act["shape"])
    return obs_space, gym.spaces.Box(np.asarray(act["low"], np.float32).reshape(shape),
                                     np.asarray(act["high"], np.float32).reshape(shape), dtype=np.float32)


class BaseAlgorithm:
    """``DQN``, ``TD3`` and ``SAC`` share everything here; only ``algo`` differs."""

    algo: ClassVar[str] = ""

    def __init__(self, env: Union[str, Any], method: str = "dense", *, seed: int = 0, device: str = "auto",
                 log_dir: Optional[Union[str, Path]] = None, preset: Optional[str] = None,
                 overwrite: bool = False, **hyperparameters):
        """``log_dir``: write the run's files there, locked and checked as ``sparserl train
        --out`` does: a finished or unfinished run in it is refused unless ``overwrite=True``."""
        from .envs import prepare_env
        if not isinstance(overwrite, bool):
            raise UserError(f"overwrite={overwrite!r}; allowed: True or False")
        self.overwrite = overwrite
        if isinstance(env, str):
            self.env, env_id = None, env
        else:
            env_id = _env_label(env)
            self.env = prepare_env(env, env_id)
        self.log_dir = None if log_dir is None else str(log_dir)
        self.options: dict = {"algo": self.algo, "env": env_id, "method": method, "seed": seed, "device": device,
                              "progress": False, "tensorboard": self.log_dir is not None, **hyperparameters}
        if preset is not None:
            self.options["preset"] = preset
        if self.log_dir is not None:
            self.options["out"] = self.log_dir
        # checked now (a bad option fails here, in one line); the rules that compare options with
        # the run length wait for learn(total_timesteps)
        self.config: TrainConfig = config_from_options(self.options, source=f"{type(self).__name__}()",
                                                       run_length_known=False)
        self.trainer = None
        self.agent = None
        self._spaces: Optional[dict] = None

    # -- training -------------------------------------------------------------------------
    def learn(self, total_timesteps: int, callback=None, progress_bar: bool = False) -> "BaseAlgorithm":
        """Train for ``total_timesteps`` more env steps. The first call plans every schedule
        (epsilon, topology updates, pruning, n-step delay) over ``total_timesteps``; a later
        call continues the same run past that plan (finished schedules stay finished)."""
        from .trainer import Trainer
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, (int, np.integer)) \
                or total_timesteps <= 0:
            raise UserError(f"total_timesteps must be a positive integer, got {total_timesteps!r}")
        if self.trainer is None:
            if self.agent is not None:
                raise UserError("this model was loaded for inference; continue training a run with "
                                "`sparserl train --resume RUN_DIR --steps N`")
            options = {**self.options, "steps": int(total_timesteps), "progress": bool(progress_bar)}
            where = f"{type(self).__name__}.learn(total_timesteps={int(total_timesteps)})"
            try:  # the options were checked by __init__; what is new here is the run length (--steps)
                self.config = config_from_options(options, source=where)
            except UserError as exc:
                raise UserError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
            with self._locked_log_dir(fresh=True):
                self.trainer = Trainer(self.config, env=self.env, write_files=self.log_dir is not None,
                                       callbacks=callback)
                self.agent = self.trainer.agent
                self._spaces = self.trainer.spaces_record()
                self.trainer.train()
            return self
        from .callbacks import as_callback
        self.trainer.cfg.steps = self.trainer.step + int(total_timesteps)
        self.trainer.cfg.progress = bool(progress_bar)
        self.trainer.callback = as_callback(callback)
        with self._locked_log_dir(fresh=False):
            self.trainer.train()
        return self

    @contextmanager
    def _locked_log_dir(self, fresh: bool):
        """Hold ``log_dir``'s lock while training, as the CLI holds ``--out``'s: the first
        ``learn`` also checks the directory (:func:`sparserl.rundir.open_run_dir`), so another
        run there is never replaced silently; a later ``learn`` continues this model's own run."""
        from .rundir import RunDirLock, open_run_dir
        with ExitStack() as stack:
            if self.log_dir is not None:
                try:
                    stack.enter_context(open_run_dir(self.log_dir, overwrite=self.overwrite) if fresh
                                        else RunDirLock(self.log_dir, "log_dir"))
                except UserError as exc:  # the CLI's words, in the API's terms
                    raise UserError(str(exc).replace("--overwrite", "overwrite=True")
                                    .replace("--out", "log_dir")) from None
            yield

    # -- acting ---------------------------------------------------------------------------
    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """``(action, None)`` for one observation or a batch (leading batch dimension), as SB3.

        Observations may have the env's original shape (e.g. highway-env's 5 x 7); they are
        flattened as in training. ``deterministic=False`` adds the algorithm's exploration
        (TD3 Gaussian noise, SAC sampling, DQN epsilon at its final value)."""
        agent = self._require_agent()
        obs = np.asarray(observation, dtype=np.float32)
        single_shape = tuple(self._spaces["obs_shape"])
        n_obs = int(np.prod(single_shape))
        if obs.shape == single_shape or obs.shape == (n_obs,):
            batch, flat = False, obs.reshape(n_obs)
        elif obs.ndim >= 1 and obs.size % n_obs == 0 and obs.shape[1:] in (single_shape, (n_obs,)):
            batch, flat = True, obs.reshape(obs.shape[0], n_obs)
        else:
            raise UserError(f"predict: observation shape {obs.shape} matches neither {single_shape} "
                            f"nor a batch of them")
        if deterministic:
            action = agent.act(flat)
        else:
            rng = self._predict_rng()
            rows = flat if batch else flat[None]
            action = np.stack([agent.explore(o, rng, 1.0)[0] for o in rows])
            action = action if batch else action[0]
        return action, None

    def _predict_rng(self) -> np.random.Generator:
        if getattr(self, "_rng", None) is None:
            self._rng = np.random.default_rng(self.config.seed + 20_000)
        return self._rng

    def evaluate(self, n_episodes: int = 10, seed: int = 12345) -> EvalResult:
        """``(mean, std)`` of the deterministic policy's return on a fresh env; the result's
        ``collision_rate`` is the fraction of episodes that crashed where the env reports
        ``info["crashed"]`` (highway-env), else ``None``."""
        from .envs import make_env, prepare_env
        from .trainer import evaluate
        agent = self._require_agent()
        env = (self.trainer.eval_env if self.trainer is not None
               else prepare_env(self.env, self.config.env) if self.env is not None
               else make_env(self.config.env, kwargs=self.config.env_kwargs))
        env.reset(seed=seed)
        return evaluate(agent, env, n_episodes)

    def _require_agent(self):
        if self.agent is None:
            raise UserError(f"{type(self).__name__}: call learn() (or load a model) before using the policy")
        return self.agent

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Union[str, Path]) -> None:
        """One file (atomic write, loadable with ``weights_only=True``): config, final
        architecture (shrunk networks included), spaces and the agent's state."""
        agent = self._require_agent()
        checkpoint.save(model_state(self.config, agent, self._spaces), path)

    @classmethod
    def load(cls, path: Union[str, Path], env=None, device: str = "cpu") -> "BaseAlgorithm":
        """A model from :meth:`save`'s file or from a ``sparserl train`` run directory."""
        state = read_model(path)
        algo = state["config"]["algo"]
        if cls.algo and algo != cls.algo:
            raise UserError(f"{path} holds a {algo} model; use {ALGORITHMS[algo].__name__}.load or sparserl.load")
        return ALGORITHMS[algo]._from_state(state, env, device)

    @classmethod
    def _from_state(cls, state: dict, env, device: str) -> "BaseAlgorithm":
        model = cls.__new__(cls)
        model.env, model.log_dir, model.trainer, model.overwrite = env, None, None, False
        model.config, model.agent, model._spaces = agent_from_state(state, device, env)
        model.options = {k: v for k, v in model.config.to_dict().items() if v is not None}
        return model

    def export(self, path: Union[str, Path], format: str = "npz", overwrite: bool = False, *,
               c_style: str = "auto", c_prefix: str = "sparserl", c_example: bool = False,
               dtype: str = "float32", int8_scales: str = "row", probe_obs=None):
        """Export the deterministic policy (``torch``, ``onnx``, ``npz`` or ``c``) with the
        observation flattening and action scaling of training built in; returns the per-layer
        storage report (``sparserl export`` on the command line). An existing file at ``path``
        is replaced only with ``overwrite=True``; a run's own files never.

        C only: ``c_style`` (``auto``, ``arrays``, ``unrolled``), ``c_prefix`` (symbol prefix),
        ``c_example`` (test vectors, ``main.c``, Makefile snippet). npz and C: ``dtype="int8"``
        with ``int8_scales`` ``row`` or ``layer``; its error against float32 is measured on
        ``probe_obs`` (observations you pass, e.g. from your env; standard-normal ones if none)."""
        from .export import export_policy
        return export_policy(self._require_agent(), format, path, overwrite=overwrite, c_style=c_style,
                             c_prefix=c_prefix, c_example=c_example, dtype=dtype, scales=int8_scales,
                             probe_obs=probe_obs, probe=None if probe_obs is None else "given observations")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.config.env!r}, method={self.config.method!r}, seed={self.config.seed})"


def model_state(cfg: TrainConfig, agent, spaces: Optional[dict]) -> dict:
    """What :meth:`BaseAlgorithm.save` and a run's ``checkpoint.pt`` hold (the same format).
    The agent's mostly-zero tensors (masked weights, their optimizer moments) are stored as
    values plus a bit mask (:func:`sparserl.checkpoint.compact`), so a sparse agent's file is
    smaller than a dense one's; :func:`read_model` expands them back exactly."""
    return {"format": MODEL_FORMAT, "config": cfg.to_dict(), "architecture": agent.architecture(),
            "spaces": spaces, "agent": checkpoint.compact(agent.state_dict())}


def agent_from_state(state: dict, device: str = "cpu", env=None):
    """``(config, agent, spaces record)`` of a saved model or checkpoint, shrunk architecture
    included, built from its stored spaces; a checkpoint older than stored spaces asks ``env``
    (or makes the stored env id, never importing a ``module:Class`` id)."""
    from .algos import make_agent
    from .trainer import resolve_device
    cfg = TrainConfig.from_dict(state["config"])
    if state.get("spaces") is not None:
        spaces = state["spaces"]
        obs_space, act_space = spaces_from_record(spaces)
    else:
        if env is None:
            from .envs import make_env
            env = make_env(cfg.env, kwargs=cfg.env_kwargs)
        obs_space, act_space = env.observation_space, env.action_space
        spaces = spaces_record(obs_space, act_space)
    agent = make_agent(cfg, obs_space, act_space, state["architecture"], resolve_device(device))
    agent.load_state_dict(state["agent"], with_training_state=False)
    return cfg, agent, spaces


def read_model(path: Union[str, Path]) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    state = checkpoint.load(p)
    if not isinstance(state, dict) or "config" not in state or "agent" not in state:
        raise UserError(f"{p} is not a sparserl model (no config/agent inside)")
    return state


class DQN(BaseAlgorithm):
    """Deep Q-Network (Double-DQN target) for discrete actions."""
    algo = "dqn"


class TD3(BaseAlgorithm):
    """Twin Delayed DDPG for continuous actions."""
    algo = "td3"


class SAC(BaseAlgorithm):
    """Soft Actor-Critic for continuous actions."""
    algo = "sac"


ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"dqn": DQN, "td3": TD3, "sac": SAC}


def load(path: Union[str, Path], env=None, device: str = "cpu") -> BaseAlgorithm:
    """Load any algorithm's model: a file from ``model.save`` or a ``sparserl train`` run directory."""
    return BaseAlgorithm.load(path, env=env, device=device)


__all__ = ["DQN", "TD3", "SAC", "load", "BaseAlgorithm"]
