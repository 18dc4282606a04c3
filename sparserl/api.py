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
same config. SB3's own spellings work where they mean the same (``TD3("MlpPolicy", env,
learning_rate=1e-3, policy_kwargs=dict(net_arch=[64, 64]), tensorboard_log="tb", verbose=1)``),
and errors name the keyword arguments (``lr=-1``), not the CLI's flags. Nothing global changes silently: the process's torch thread count is set
from ``torch_threads`` (default 1) and torch's global RNG is seeded from ``seed`` when
``learn`` builds the run, exactly as the CLI does; importing sparserl changes nothing.
"""
from __future__ import annotations

import difflib
import re
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Union

import numpy as np

from . import checkpoint
from .config import FIELDS, TrainConfig, config_from_options
from .errors import UserError
# the model-file format lives in model_file.py; these names stay importable from here
from .model_file import (MODEL_FORMAT, agent_from_state, model_state, read_model,  # noqa: F401
                         spaces_from_record, spaces_record)

if TYPE_CHECKING:
    from .evaluation import EvalResult

#: SB3 policy names a user may put first, as ``TD3("MlpPolicy", env)``: sparserl always builds
#: MLPs, so "MlpPolicy" is accepted and dropped; the others have no sparserl counterpart.
SB3_POLICIES = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")

#: SB3 keyword -> sparserl option, for the keywords whose meaning is the same (SB3's
#: ``target_update_interval`` counts env steps, as ``target_update_every`` does; TD3's target
#: noise is relative to the action bound in both).
SB3_RENAMES = {"learning_rate": "lr", "target_update_interval": "target_update_every",
               "exploration_fraction": "eps_fraction", "exploration_initial_eps": "eps_start",
               "exploration_final_eps": "eps_end", "target_policy_noise": "policy_noise",
               "target_noise_clip": "noise_clip"}

#: what a few options are called in the API, where they are not keywords of the same name
_API_NAMES = {"steps": "total_timesteps", "out": "log_dir"}
#: an option's value as messages print it: quoted, bracketed, or one token
_VALUE = r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\{[^}]*\}|[^\s,;:()]+"
_FLAG_IN_TEXT = re.compile(r"--(?P<name>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?: (?P<value>" + _VALUE + "))?")
_LITERAL = re.compile(r"-?\d[\w.+-]*|True|False|None|nan|-?inf")


def api_words(message: str) -> str:
    """A message written for the command line, in the Python API's terms: ``--lr -1`` is
    ``lr=-1``, ``--steps 100`` is ``total_timesteps=100``, ``--algo dqn`` is ``DQN``, so an API
    user reads the keyword arguments they passed, not flags they never typed."""
    def word(m: re.Match) -> str:
        name, value = m.group("name").replace("-", "_"), m.group("value")
        negated = name.startswith("no_") and name[3:] in FIELDS
        if negated:
            name = name[3:]
        if name not in FIELDS and name not in ("overwrite",):
            return m.group(0)
        if name == "algo" and value in ALGORITHMS:
            return ALGORITHMS[value].__name__
        keyword = _API_NAMES.get(name, name)
        if negated:
            return f"{keyword}=False" + (f" {value}" if value else "")
        if value is None:
            return keyword
        choices = FIELDS[name].metadata.get("choices") if name in FIELDS else None
        if value[0] in "'\"[{" or _LITERAL.fullmatch(value):
            return f"{keyword}={value}"
        if choices and value in choices:
            return f"{keyword}={value!r}"
        return f"{keyword} {value}"
    text = _FLAG_IN_TEXT.sub(word, message)
    return text.replace("see `sparserl train --help`", "see help(sparserl.TD3) and `sparserl train --help`")


def _user_error_in_api_words(exc: UserError, renamed: dict | None = None) -> UserError:
    """``exc`` in the API's words; ``renamed`` (sparserl option -> the SB3 keyword the user
    passed) names an option as the user spelled it (``learning_rate=-1``, not ``lr=-1``)."""
    text = api_words(str(exc))
    for ours, theirs in (renamed or {}).items():
        text = re.sub(rf"(?<![\w.]){re.escape(ours)}(?=[= ])", theirs, text)
    return UserError(text)


def _sb3_options(cls_name: str, options: dict) -> dict:
    """SB3 spellings turned into sparserl options of the same meaning (see ``SB3_RENAMES``;
    ``policy_kwargs=dict(net_arch=[...])`` is ``hidden``, ``ent_coef`` is SAC's ``alpha`` and
    ``autotune``); anything that has no sparserl counterpart is one line naming it."""
    out = dict(options)
    for sb3, ours in SB3_RENAMES.items():
        if sb3 in out:
            if ours in out:
                raise UserError(f"{cls_name}(): {sb3}= and {ours}= are the same option; give one of them")
            value = out.pop(sb3)
            if callable(value):
                raise UserError(f"{cls_name}(): {sb3}={value!r}: schedules are not supported; allowed: a number")
            out[ours] = value
    if "policy_kwargs" in out:
        out.update(_policy_kwargs(cls_name, out.pop("policy_kwargs"), "hidden" in out))
    if "ent_coef" in out:
        value = out.pop("ent_coef")
        if "alpha" in out or "autotune" in out:
            raise UserError(f"{cls_name}(): ent_coef= sets alpha= and autotune=; give either ent_coef= or those")
        if isinstance(value, str) and (value == "auto" or value.startswith("auto_")):
            out["autotune"], out["alpha"] = True, value[5:] if value.startswith("auto_") else 1.0
        elif isinstance(value, str):
            raise UserError(f"{cls_name}(): ent_coef={value!r}: allowed: 'auto', 'auto_<initial value>' or a number")
        else:
            out["autotune"], out["alpha"] = False, value
    if "train_freq" in out and isinstance(out["train_freq"], (tuple, list)):
        freq = tuple(out["train_freq"])
        if len(freq) != 2 or freq[1] != "step":
            raise UserError(f"{cls_name}(): train_freq={freq!r}: allowed: an integer or (n, 'step') "
                            f"(updates are scheduled in env steps, not episodes)")
        out["train_freq"] = freq[0]
    return out


def _policy_kwargs(cls_name: str, value, has_hidden: bool) -> dict:
    """``policy_kwargs``: only ``net_arch`` has a meaning here (sparserl's MLPs are ReLU MLPs of
    one width list shared by actor and critic)."""
    if not isinstance(value, dict):
        raise UserError(f"{cls_name}(): policy_kwargs={value!r}: allowed: a dict such as dict(net_arch=[256, 256])")
    other = sorted(str(k) for k in value if k != "net_arch")
    if other:
        raise UserError(f"{cls_name}(): policy_kwargs key(s) {', '.join(other)} have no sparserl counterpart "
                        f"(its networks are ReLU MLPs); allowed: net_arch")
    if "net_arch" not in value:
        return {}
    if has_hidden:
        raise UserError(f"{cls_name}(): policy_kwargs['net_arch'] and hidden= are the same option; give one of them")
    arch = value["net_arch"]
    if isinstance(arch, dict):
        lists = {k: list(v) for k, v in arch.items() if isinstance(v, (list, tuple))}
        if not lists or len({tuple(v) for v in lists.values()}) != 1 or len(lists) != len(arch):
            raise UserError(f"{cls_name}(): policy_kwargs net_arch={arch!r}: sparserl gives the actor and critic "
                            f"the same hidden widths; allowed: a list such as [256, 256] or equal pi/qf lists")
        arch = next(iter(lists.values()))
    return {"hidden": arch}


def _tensorboard_run_dir(root: Union[str, Path], name: str) -> Path:
    """SB3's layout for ``tensorboard_log``: ``ROOT/NAME_1``, ``ROOT/NAME_2``, ... (the next free number)."""
    root = Path(root)
    taken = [int(m.group(1)) for p in (root.glob(f"{name}_*") if root.is_dir() else [])
             if (m := re.fullmatch(re.escape(name) + r"_(\d+)", p.name))]
    return root / f"{name}_{max(taken, default=0) + 1}"


def _env_label(env) -> str:
    """What ``config.env`` says about a user-given Env instance (for logs and summaries)."""
    if env.spec is not None and env.spec.id:
        return env.spec.id
    cls = type(env.unwrapped)
    return f"{cls.__module__}:{cls.__name__}"


class BaseAlgorithm:
    """``DQN``, ``TD3`` and ``SAC`` share everything here; only ``algo`` differs."""

    algo: ClassVar[str] = ""

    def __init__(self, env: Union[str, Any], *args, method: Optional[str] = None, seed: int = 0,
                 device: str = "auto", log_dir: Optional[Union[str, Path]] = None, preset: Optional[str] = None,
                 overwrite: bool = False, tensorboard_log: Optional[Union[str, Path]] = None, verbose: int = 0,
                 **hyperparameters):
        """``env``: an id or an Env instance; the method may follow it (``TD3(env, "rlx2")``).

        ``log_dir``: write the run's files there, locked and checked as ``sparserl train
        --out`` does: a finished or unfinished run in it is refused unless ``overwrite=True``.

        SB3's spellings are accepted where they mean the same, so SB3 code runs unchanged:
        a leading ``"MlpPolicy"`` (sparserl builds MLP policies, so it changes nothing),
        ``learning_rate`` (``lr``), ``policy_kwargs=dict(net_arch=[...])`` (``hidden``),
        ``tensorboard_log`` (TensorBoard events in ``DIR/TD3_1``, ... also without ``log_dir``),
        ``verbose`` (0: silent, 1 or 2: one line per evaluation), ``ent_coef``,
        ``target_update_interval``, ``exploration_*``, ``target_policy_noise``, ``target_noise_clip``."""
        from .api_checks import check_env_argument
        from .envs import prepare_env
        check_env_argument(env, f"{type(self).__name__}()")
        name = type(self).__name__
        policy = hyperparameters.pop("policy", None)  # SB3's keyword spelling: TD3(policy=..., env=...)
        if policy is not None and policy != "MlpPolicy":
            raise UserError(f"{name}(policy={policy!r}): sparserl trains MLP policies only (observations are "
                            f"flattened); allowed: policy='MlpPolicy' or no policy")
        if isinstance(env, str) and env in SB3_POLICIES:
            if env != "MlpPolicy":
                raise UserError(f"{name}({env!r}, ...): sparserl trains MLP policies only (observations are "
                                f"flattened); allowed: 'MlpPolicy' or no policy name, e.g. {name}('Pendulum-v1')")
            if not args:
                raise UserError(f"{name}('MlpPolicy'): the env comes next, e.g. {name}('MlpPolicy', 'Pendulum-v1') "
                                f"(sparserl always builds an MLP policy, so {name}('Pendulum-v1') is the same)")
            env, args = args[0], args[1:]
        if len(args) > 1 or (args and method is not None):
            raise UserError(f"{name}(): positional arguments are the env and the method; got {len(args) + 1} "
                            f"positional arguments{' and method=' if method is not None else ''}; give the "
                            f"others as keywords (e.g. lr=3e-4)")
        method = args[0] if args else ("dense" if method is None else method)
        if isinstance(method, str) and method in SB3_POLICIES:
            raise UserError(f"{name}(env, {method!r}): the policy name comes first, as in SB3: "
                            f"{name}({method!r}, env) (or leave it out)")
        if not isinstance(overwrite, bool):
            raise UserError(f"overwrite={overwrite!r}; allowed: True or False")
        if isinstance(verbose, bool) or verbose not in (0, 1, 2):
            raise UserError(f"{name}(): verbose={verbose!r}; allowed: 0 (silent), 1 or 2 (one line per evaluation)")
        self.overwrite, self.verbose = overwrite, int(verbose)
        self.tensorboard_log = None if tensorboard_log is None else str(tensorboard_log)
        unknown = sorted(k for k in hyperparameters if k not in FIELDS and k not in SB3_RENAMES
                         and k not in ("policy_kwargs", "ent_coef"))
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, [*FIELDS, *SB3_RENAMES], n=1)
                if close:
                    hints.append(f"{key} (did you mean {close[0]}?)")
                else:
                    hints.append(key)
            raise UserError(f"{name}(): unknown keyword argument(s) {', '.join(hints)}; the keywords are "
                            f"sparserl train's options with underscores (batch_size=256), see `sparserl train --help`")
        self._renamed = {SB3_RENAMES[k]: k for k in hyperparameters if k in SB3_RENAMES}
        hyperparameters = _sb3_options(name, hyperparameters)
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
        try:
            self.config: TrainConfig = config_from_options(self.options, source=f"{name}()", run_length_known=False)
        except UserError as exc:
            raise _user_error_in_api_words(exc, self._renamed) from None
        self.trainer = None
        self.agent = None
        self._spaces: Optional[dict] = None

    # -- training -------------------------------------------------------------------------
    def learn(self, total_timesteps: int, callback=None, progress_bar: bool = False,
              tb_log_name: Optional[str] = None) -> "BaseAlgorithm":
        """Train for ``total_timesteps`` more env steps. The first call plans every schedule
        (epsilon, topology updates, pruning, n-step delay) over ``total_timesteps``; a later
        call continues the same run past that plan (finished schedules stay finished).
        ``progress_bar``: a tqdm bar; else ``verbose=1`` prints one line per evaluation.
        ``tb_log_name``: the run's folder name under ``tensorboard_log`` (SB3's; default the class name)."""
        try:
            return self._learn(total_timesteps, callback, progress_bar, tb_log_name)
        except UserError as exc:
            raise _user_error_in_api_words(exc, getattr(self, "_renamed", None)) from None

    def _output(self, progress_bar: bool) -> str:
        return "bar" if progress_bar else "lines" if getattr(self, "verbose", 0) else "none"

    def _learn(self, total_timesteps, callback, progress_bar, tb_log_name) -> "BaseAlgorithm":
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
            notes: list = []
            try:  # the options were checked by __init__; what is new here is the run length (--steps)
                self.config = config_from_options(options, source=where, notes=notes)
            except UserError as exc:
                raise UserError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
            for note in notes if getattr(self, "verbose", 0) else ():  # which preset applied, as the CLI says
                print(api_words(note))
            if self.config.method != "dense":  # a schedule too short for the run: a warning, as on the CLI
                import warnings

                from .plan import plan_warnings
                for warning in plan_warnings(self.config):
                    warnings.warn(api_words(warning), stacklevel=3)
            tb_dir = None
            if getattr(self, "tensorboard_log", None) is not None:
                tb_dir = _tensorboard_run_dir(self.tensorboard_log, tb_log_name or type(self).__name__)
            with self._locked_log_dir(fresh=True):
                self.trainer = Trainer(self.config, env=self.env, write_files=self.log_dir is not None,
                                       callbacks=callback, output=self._output(progress_bar),
                                       tensorboard_dir=tb_dir)
                self.agent = self.trainer.agent
                self._spaces = self.trainer.spaces_record()
                self.trainer.train()
            return self
        from .callbacks import as_callback
        self.trainer.cfg.steps = self.trainer.step + int(total_timesteps)
        self.trainer.cfg.progress = bool(progress_bar)
        self.trainer.output = self._output(progress_bar)
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
        from .api_checks import check_observation
        obs = check_observation(observation)
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
        from .api_checks import check_evaluate_arguments
        from .envs import make_env, prepare_env
        from .evaluation import evaluate
        n_episodes, seed = check_evaluate_arguments(n_episodes, seed)
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
        from .api_checks import check_save_path
        agent = self._require_agent()
        checkpoint.save(model_state(self.config, agent, self._spaces), check_save_path(path))

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
        model.verbose, model.tensorboard_log, model._renamed = 0, None, {}
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
