"""Typed run configuration.

One flat dataclass holds every knob of a run so that the CLI, YAML files, presets and
checkpoints all speak the same names (``--batch-size`` on the command line is
``batch_size`` in YAML).  Fields left as ``None`` take the algorithm's default from
``ALGO_DEFAULTS`` when the config is resolved, and the *resolved* config is what a run
writes to ``config.yaml``, so that file re-runs the same experiment.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import UserError

from .methods import METHODS, method_class

ALGOS = ("dqn", "td3", "sac")
ALLOCATIONS = ("erk", "uniform")
PRESET_DIR = Path(__file__).parent / "presets"
SPARSE_BACKENDS = ("masked", "csr", "auto")


def _f(default: Any, help: str, choices: tuple | None = None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    # --- what to run -------------------------------------------------------------------
    algo: str = _f("td3", "algorithm", ALGOS)
    env: str = _f("Pendulum-v1", "Gymnasium id or module.path:ClassName")
    env_kwargs: Optional[dict] = _f(None, "keyword arguments for the env constructor (YAML/JSON mapping)")
    steps: int = _f(10_000, "environment steps")
    seed: int = _f(0, "random seed (torch, numpy, env)")
    out: str = _f("runs/default", "output directory")
    method: str = _f("dense", "sparse/pruning method", METHODS)
    preset: Optional[str] = _f(None, "per-env settings: 'paper' (RLx2 paper) or 'tuned' (rl-zoo tuned dense baselines)",
                               ("paper", "tuned"))
    # --- evaluation, logging, checkpoints -----------------------------------------------
    eval_every: int = _f(5_000, "env steps between deterministic evaluations")
    eval_episodes: int = _f(10, "episodes per evaluation")
    checkpoint_every: int = _f(10_000, "env steps between resumable checkpoints (0: only at the end)")
    progress: bool = _f(True, "show a progress bar")
    tensorboard: bool = _f(True, "write TensorBoard events")
    torch_threads: int = _f(1, "torch intra-op threads, set for the process (1 is fastest for these small MLPs)")
    device: str = _f("auto", "where networks, replay sampling and masks live: auto (cuda if available), cpu, cuda, cuda:N")
    schedule_steps: Optional[int] = _f(None, "env steps the schedules (epsilon, topology, pruning, n-step delay) are planned "
                                             "over (default: --steps; a resumed or extended run keeps its original plan)")
    # --- common hyper-parameters (None: the algorithm's default) -------------------------
    hidden: Optional[list[int]] = _f(None, "hidden layer widths, e.g. 256 256")
    init: str = _f("default", "weight init of every Linear layer, before any mask: 'default' (PyTorch) or "
                   "'orthogonal' (zero biases; the RLx2 reference's SAC)", ("default", "orthogonal"))
    lr: Optional[float] = _f(None, "Adam learning rate")
    batch_size: Optional[int] = _f(None, "minibatch size")
    gamma: float = _f(0.99, "discount factor")
    tau: Optional[float] = _f(None, "soft target update rate (1.0 = hard copy)")
    buffer_size: Optional[int] = _f(None, "replay capacity (maximum)")
    learning_starts: Optional[int] = _f(None, "random warm-up env steps before updates (default: the algorithm's, "
                                              "at most 10% of --steps so a short run still trains)")
    train_freq: Optional[int] = _f(None, "env steps between update rounds")
    gradient_steps: Optional[int] = _f(None, "gradient updates per round")
    # --- TD3 -----------------------------------------------------------------------------
    exploration_noise: float = _f(0.1, "TD3 Gaussian exploration noise (x max action)")
    policy_noise: float = _f(0.2, "TD3 target policy smoothing noise (x max action)")
    noise_clip: float = _f(0.5, "TD3 target noise clip (x max action)")
    policy_delay: Optional[int] = _f(None, "TD3/SAC: critic updates per actor (and TD3 target) update")
    # --- SAC -----------------------------------------------------------------------------
    alpha: float = _f(0.2, "SAC initial entropy coefficient")
    autotune: bool = _f(True, "SAC automatic entropy tuning (target entropy = -|A|)")
    sac_collect: str = _f("sample", "SAC action executed while collecting data after warm-up: 'sample' "
                          "(standard SAC) or the deterministic 'mean' (the RLx2 reference code)", ("sample", "mean"))
    # --- DQN -----------------------------------------------------------------------------
    eps_start: float = _f(1.0, "DQN initial epsilon")
    eps_end: float = _f(0.05, "DQN final epsilon")
    eps_fraction: float = _f(0.5, "DQN fraction of the run over which epsilon decays")
    target_update_every: Optional[int] = _f(None, "DQN env steps between target updates")
    double_q: bool = _f(True, "DQN: Double-DQN target")
    # --- sparse training (static, set, rigl, rlx2, tiny) ---------------------------------
    actor_sparsity: float = _f(0.9, "actor weight sparsity")
    critic_sparsity: float = _f(0.9, "critic weight sparsity (both critics)")
    q_sparsity: float = _f(0.9, "DQN Q-network weight sparsity")
    allocation: str = _f("erk", "layer-wise sparsity allocation", ALLOCATIONS)
    mask_init: Optional[str] = _f(None, "initial mask (default: random for static, else magnitude)", ("magnitude", "random"))
    topology_delta: int = _f(10_000, "gradient updates of a network between topology updates")
    drop_fraction: float = _f(0.5, "initial drop fraction zeta0 (cosine-annealed)")
    topology_stop: Optional[float] = _f(None, "stop topology updates after this fraction of updates")
    grow: Optional[str] = _f(None, "growth criterion (default: by method)", ("gradient", "random"))
    grad_accumulation: int = _f(1, "minibatches the RigL dense gradient is accumulated over")
    reset_adam: bool = _f(True, "reset Adam moments of dropped and grown weights")
    regrow_dropped: bool = _f(True, "a connection dropped at a topology update may be regrown in the same "
                              "update, keeping its value (RigL / RLx2 reference); --no-regrow-dropped excludes it")
    skip_step_on_update: bool = _f(True, "skip the optimizer step on topology-update steps (reference)")
    sparse_backend: str = _f("masked", "sparse execution: masked dense, csr kernels, or auto (measured per layer)",
                             SPARSE_BACKENDS)
    # --- RLx2: multi-step target and dynamic buffer --------------------------------------
    nstep: Optional[int] = _f(None, "multi-step TD target length n (default: 3 for rlx2, else 1)")
    nstep_delay: Optional[int] = _f(None, "updates with n=1 before switching to n (rlx2 default: 10%)")
    dynamic_buffer: Optional[bool] = _f(None, "dynamic-capacity replay buffer (default: on for rlx2, else off)")
    buffer_min: int = _f(100_000, "dynamic buffer: minimum capacity")
    buffer_max: Optional[int] = _f(None, "dynamic buffer: maximum capacity (default buffer_size)")
    buffer_threshold: Optional[float] = _f(None, "dynamic buffer: policy-distance threshold (default: 0.2 for "
                                           "mse, the reference; the same drift sqrt(0.4*|A|) for l2)")
    buffer_check_every: int = _f(10_000, "dynamic buffer: env steps between checks")
    policy_distance: str = _f("mse", "dynamic buffer: distance metric (mse: mean delta^2/2, the reference; "
                              "l2: the paper's Euclidean distance)", ("mse", "l2"))
    buffer_shrink: str = _f("reference", "dynamic buffer: eviction rule (reference: drop 10% of the size, no cap; "
                            "fraction: 10% and cap; to-threshold: until within the threshold, cap)",
                            ("reference", "fraction", "to-threshold"))
    # --- structured pruning (structured, neuron-magnitude) and GMP ----------------------
    importance: str = _f("fluctuation", "neuron importance estimator", ("activation", "fluctuation", "taylor", "magnitude"))
    regularizer: str = _f("importance", "group penalty", ("importance", "group-lasso", "none"))
    reg_lambda: float = _f(1e-4, "group-sparse regulariser strength")
    prune_every: int = _f(1_000, "updates between prune events")
    # 0.05 / 0.5: the winner of the CartPole part of benchmarks/suites/struct_sweep.yaml (seeds 100-101):
    # pruning done by mid-run leaves half the run to recover (the old 0.1 / 0.8 recovered less)
    prune_start: float = _f(0.05, "fraction of updates when pruning starts")
    prune_end: float = _f(0.5, "fraction of updates when pruning ends (the rest of the run recovers)")
    min_width: int = _f(4, "minimum neurons kept per hidden layer")
    target_neuron_fraction: float = _f(0.93, "structured: fraction of hidden neurons to remove by prune_end")
    threshold_scope: str = _f("layer", "structured: prune each hidden layer to the target on its own (layer), or "
                              "pool layer-normalised importance and the neuron budget over all hidden layers of "
                              "an MLP (global; each layer keeps --min-width)", ("layer", "global"))
    threshold_rule: str = _f("ramp", "structured: prune below a ramping multiple of the mean importance, capped by "
                             "the cubic target (ramp), or exactly the cubic target's least important (cubic)",
                             ("ramp", "cubic"))
    recovery_reg_scale: float = _f(1.0, "structured: --reg-lambda multiplier after --prune-end (the recovery "
                                   "phase; 0 = fine-tune the pruned network without the regulariser)")
    prune_guard: Optional[float] = _f(None, "pause pruning while eval return is this fraction below its best")
    gmp_sparsity: float = _f(0.95, "GMP final weight sparsity")

    # --------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}; see `sparserl train --help`")
        return cls(**data)


ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    # SPEC: MLP 2x256, Adam 3e-4, batch 256, gamma 0.99, tau 0.005, 25k random warm-up.
    "td3": dict(hidden=[256, 256], lr=3e-4, batch_size=256, tau=0.005, buffer_size=1_000_000,
                learning_starts=25_000, train_freq=1, gradient_steps=1, policy_delay=2),
    "sac": dict(hidden=[256, 256], lr=3e-4, batch_size=256, tau=0.005, buffer_size=1_000_000,
                learning_starts=25_000, train_freq=1, gradient_steps=1, policy_delay=1),
    # DQN: CleanRL / SB3-style discrete-control defaults with the SPEC's 2x256 MLP.
    "dqn": dict(hidden=[256, 256], lr=2.5e-4, batch_size=128, tau=1.0, buffer_size=100_000,
                learning_starts=1_000, train_freq=4, gradient_steps=1, target_update_every=500,
                policy_delay=1),
}


# Default warm-up: the algorithm's (25k TD3/SAC, 1k DQN) or steps / 10, whichever is smaller.
WARMUP_DIVISOR = 10

# Fallbacks for options that are neither set by the user nor by the method's defaults.
GENERIC_DEFAULTS: dict[str, Any] = {"nstep": 1, "dynamic_buffer": False, "mask_init": "magnitude"}


def resolve(cfg: TrainConfig) -> TrainConfig:
    """The one place a config is completed: the user's values, then the method's defaults
    (``Method.DEFAULTS``), the algorithm's defaults and generic fallbacks for options still
    unset, then derived values and validation. Returns a new config; the CLI, YAML files,
    presets, ``--resume`` and the Python API all go through here."""
    if cfg.algo not in ALGOS:
        raise UserError(f"unknown --algo {cfg.algo!r}; allowed: {', '.join(ALGOS)}")
    method = method_class(cfg.method)
    if cfg.allocation not in ALLOCATIONS:
        raise UserError(f"unknown --allocation {cfg.allocation!r}; allowed: {', '.join(ALLOCATIONS)}")
    if cfg.sparse_backend not in SPARSE_BACKENDS:
        raise UserError(f"unknown --sparse-backend {cfg.sparse_backend!r}; allowed: {', '.join(SPARSE_BACKENDS)}")
    data = cfg.to_dict()
    if data.get("learning_starts") is None and isinstance(cfg.steps, int):
        # the warm-up default scales down for short runs, so a default run always trains
        data["learning_starts"] = min(ALGO_DEFAULTS[cfg.algo]["learning_starts"], cfg.steps // WARMUP_DIVISOR)
    for layer in (method.defaults(data), ALGO_DEFAULTS[cfg.algo], GENERIC_DEFAULTS):
        for key, value in layer.items():
            if data.get(key) is None:
                data[key] = copy.deepcopy(value)
    out = TrainConfig(**data)
    if out.schedule_steps is None:
        out.schedule_steps = out.steps
    for f in fields(TrainConfig):  # a --config file bypasses argparse's choices
        choices, value = f.metadata.get("choices"), getattr(out, f.name)
        if choices and value is not None and value not in choices:
            raise UserError(f"--{f.name.replace('_', '-')} {value!r} is not allowed; allowed: {', '.join(choices)}")
    for name in ("steps", "batch_size", "buffer_size", "eval_episodes", "train_freq", "gradient_steps",
                 "topology_delta", "prune_every", "buffer_check_every", "nstep", "policy_delay", "schedule_steps"):
        value = getattr(out, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
    if out.eval_every < 0 or out.checkpoint_every < 0 or out.learning_starts < 0:
        raise UserError("--eval-every, --checkpoint-every and --learning-starts must be >= 0")
    for name in ("actor_sparsity", "critic_sparsity", "q_sparsity", "gmp_sparsity"):
        value = getattr(out, name)
        if not 0.0 <= value < 1.0:
            raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {value!r}")
    if not 0.0 <= out.drop_fraction <= 1.0:
        raise UserError(f"--drop-fraction must be in [0, 1], got {out.drop_fraction!r}")
    if not 0.0 <= out.prune_start < out.prune_end <= 1.0:
        raise UserError(f"need 0 <= --prune-start < --prune-end <= 1, got {out.prune_start!r}, {out.prune_end!r}")
    for name in ("threshold_scope", "threshold_rule"):
        allowed = next(f for f in fields(TrainConfig) if f.name == name).metadata["choices"]
        if getattr(out, name) not in allowed:
            raise UserError(f"unknown --{name.replace('_', '-')} {getattr(out, name)!r}; allowed: {', '.join(allowed)}")
    if not out.recovery_reg_scale >= 0:
        raise UserError(f"--recovery-reg-scale must be >= 0, got {out.recovery_reg_scale!r}")
    method.derived(out)
    if out.nstep_delay < 0:
        raise UserError(f"--nstep-delay must be >= 0, got {out.nstep_delay!r}")
    if out.buffer_min < 1:
        raise UserError(f"--buffer-min must be a positive integer, got {out.buffer_min!r}")
    if out.buffer_max is not None and out.buffer_max < 1:
        raise UserError(f"--buffer-max must be a positive integer, got {out.buffer_max!r}")
    if out.buffer_max is not None and out.buffer_min > out.buffer_max:
        raise UserError(f"--buffer-min ({out.buffer_min}) must not exceed --buffer-max ({out.buffer_max})")
    if out.buffer_threshold is not None and out.buffer_threshold < 0:
        raise UserError(f"--buffer-threshold must be >= 0, got {out.buffer_threshold!r}")
    if not out.hidden or any(int(h) <= 0 for h in out.hidden):
        raise UserError(f"--hidden must be positive widths, got {out.hidden!r}")
    if out.env_kwargs is not None and not isinstance(out.env_kwargs, dict):
        raise UserError(f"--env-kwargs must be a mapping (YAML/JSON), got {out.env_kwargs!r}")
    if not (out.device in ("auto", "cpu", "cuda") or (out.device.startswith("cuda:") and out.device[5:].isdigit())):
        raise UserError(f"--device must be auto, cpu, cuda or cuda:N, got {out.device!r}")
    method.validate(out)
    return out


def config_from_options(options: dict, source: str = "options") -> TrainConfig:
    """A resolved config from the options a user gave (CLI flags merged over a YAML file, or
    the Python API's keyword arguments). Precedence: built-in defaults < ``preset`` < the
    given options; then :func:`resolve` fills method and algorithm defaults."""
    TrainConfig.from_dict(options, source=source)  # unknown keys -> one line
    data: dict = {}
    preset = options.get("preset")
    if preset:
        probe = TrainConfig.from_dict(options, source=source)
        data.update(load_preset(preset, probe.algo, probe.env))
    data.update(options)
    return resolve(TrainConfig.from_dict(data, source=source))


def load_preset(name: str, algo: str, env: str) -> dict:
    """Per-env settings from ``presets/<name>.yaml``: ``common``, then ``algos.<algo>``, then
    ``envs.<algo>/<env-family>`` (later blocks win)."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        allowed = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise UserError(f"unknown --preset {name!r}; allowed: {', '.join(allowed)}")
    table = yaml.safe_load(path.read_text())
    family = env.split("-v")[0]
    key = f"{algo}/{family}"
    if key not in table.get("envs", {}):
        known = ", ".join(sorted(table.get("envs", {})))
        raise UserError(f"--preset {name} has no settings for {algo} on {env}; known: {known}")
    return {**table.get("common", {}), **(table.get("algos") or {}).get(algo, {}), **table["envs"][key]}


def planned_updates(cfg: TrainConfig) -> int:
    """Gradient updates of the critic / Q-network over the planned run (schedules count these).

    The loop updates after env step ``s`` (0-based) when ``s >= learning_starts`` and
    ``(s + 1) % train_freq == 0``: the multiples of ``train_freq`` in
    ``(learning_starts, steps]``."""
    steps = cfg.schedule_steps if cfg.schedule_steps is not None else cfg.steps
    rounds = max(steps // cfg.train_freq - cfg.learning_starts // cfg.train_freq, 0)
    return max(1, rounds * cfg.gradient_steps)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping of config keys; one-line errors for unreadable files."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise UserError(f"config file not found: {p}") from None
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read config {p}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {p} must be a YAML mapping of keys to values, got {type(data).__name__}")
    return data


def save_yaml(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
