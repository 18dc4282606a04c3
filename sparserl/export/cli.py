"""``sparserl export`` and ``sparserl eval --exported``: the CLI side of :mod:`sparserl.export`."""
from __future__ import annotations

import argparse
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from . import FORMATS, export_policy, format_report, policy_spec_of
from .storage import export_report

if TYPE_CHECKING:
    from ..evaluation import EvalResult

LOAD_HINTS = {
    "torch": "load: torch.export.load(PATH).module()(obs_batch)  # (B, obs_dim) float32",
    "onnx": "load: onnxruntime.InferenceSession(PATH).run(None, {'obs': obs_batch})[0]",
    "npz": "load: from sparserl.runtime import Policy; Policy.load(PATH).act(obs)  # numpy only",
    "c": "build: cc -std=c99 -O2 -c PATH (call sparserl_act(obs, out); see the .h); "
         "or run it: sparserl eval RUN_DIR --exported PATH",
}


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export", help="write a run's policy as torch, onnx, npz or C")
    parser.add_argument("dir", help="run directory (holds checkpoint.pt), or a Stable-Baselines3 model .zip")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="torch: torch.export program; onnx: ONNX model; npz: compact arrays for "
                             "sparserl.runtime (numpy only); c: C99 source + header")
    parser.add_argument("--out", required=True, metavar="PATH", help="output file (for c: a .c path; the .h goes next to it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output file (never a run's checkpoint.pt, config.yaml, ...)")
    return parser


def add_exported_argument(eval_parser: argparse.ArgumentParser) -> None:
    eval_parser.add_argument("--exported", metavar="PATH",
                             help="evaluate an exported policy instead of the checkpoint: a .npz, a generated "
                                  ".c (compiled here with cc) or a compiled shared library (.so)")


def cmd_export(ns: argparse.Namespace) -> int:
    if str(ns.dir).endswith(".zip"):  # a Stable-Baselines3 model (sparse or shrunk by our callbacks)
        try:
            from ..integrations import sb3
        except ImportError:
            raise UserError("exporting an SB3 zip needs stable-baselines3: pip install 'sparserl[sb3]'") from None
        cls = sb3.algorithm_of_zip(ns.dir)
        model = sb3.load_zip_safely(ns.dir, cls)  # never unpickles the zip
        report = export_policy(sb3.policy_spec(model), ns.format, ns.out, overwrite=ns.overwrite)
        what = f"the SB3 {cls.__name__} policy"
    else:
        from ..model_file import load_agent
        cfg, agent, _ = load_agent(ns.dir, with_env=False)
        report = export_policy(agent, ns.format, ns.out, overwrite=ns.overwrite)
        what = f"the {cfg.algo}/{cfg.method} policy for {cfg.env}"
    extra = f" and {Path(ns.out).with_suffix('.h')}" if ns.format == "c" else ""
    print(f"wrote {what} as {ns.format}: {ns.out}{extra}")
    print(format_report(report))
    print(LOAD_HINTS[ns.format].replace("PATH", repr(str(ns.out))))
    return 0


def size_section(agent) -> str:
    """The ``sparserl flops`` section: the deployed policy's per-layer stored form and size."""
    return "== deployed policy (sparserl export): stored form and size\n" + format_report(
        export_report(policy_spec_of(agent)))


def load_exported(path: str | Path, workdir: str | Path):
    """A policy object with ``act(obs)`` from a ``.npz``, a ``.so`` or a generated ``.c``
    (compiled into ``workdir``)."""
    from ..runtime import CPolicy, Policy
    from .c_format import compile_c

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--exported {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            return Policy.load(path)
        if suffix == ".c":
            # a fresh file name: the dynamic loader returns an already loaded library for a reused path
            lib = compile_c([path], Path(tempfile.mkdtemp(dir=workdir)) / f"{path.stem}.so")
            return CPolicy(lib)
        if suffix in (".so", ".dylib", ".dll"):
            return CPolicy(path)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"--exported {path}: cannot load it ({str(exc).splitlines()[0][:200]})") from None
    raise UserError(f"--exported {path}: expected a .npz, a generated .c or a compiled .so")


def _check_actions_fit(policy, env, path, env_id: str) -> None:
    """A DQN export (argmax, an index) on a continuous run's env, or the reverse, would send
    the env actions of the wrong kind."""
    import gymnasium as gym
    import numpy as np
    discrete = policy.discrete if hasattr(policy, "discrete") else policy.head == "argmax"
    space = env.action_space
    if discrete != isinstance(space, gym.spaces.Discrete):
        kind = "discrete (argmax) actions" if discrete else "continuous actions"
        raise UserError(f"--exported {path} gives {kind}, but {env_id} takes {space}; allowed: an export "
                        f"of a policy trained for this env's action space")
    if not discrete:
        n_out = policy.act_dim if hasattr(policy, "act_dim") else int(np.asarray(policy.action_scale).size)
        if n_out != int(np.prod(space.shape)):
            raise UserError(f"--exported {path} gives {n_out} action values, but {env_id} takes {space}")


def evaluate_exported(run_dir: str | Path, path: str | Path, episodes: int, seed: int, env=None,
                      trust_env_module: bool = False) -> EvalResult:
    """Mean and std return of the exported policy at ``path`` on the run's environment (or the
    env id the user gave), episodes seeded exactly as ``sparserl eval`` seeds the checkpoint's.
    The result is an ``evaluation.EvalResult``: it also carries the collision rate (highway-env)."""
    import numpy as np

    from ..evaluation import evaluate
    from ..model_file import load_agent

    cfg, _, env = load_agent(run_dir, env=env, trust_env_module=trust_env_module)
    obs_dim = int(np.prod(env.observation_space.shape))
    with tempfile.TemporaryDirectory() as workdir:
        policy = load_exported(path, workdir)
        if policy.obs_dim != obs_dim:
            raise UserError(f"--exported {path} takes {policy.obs_dim} observation values, "
                            f"but {cfg.env} (the run's env) has {obs_dim}")
        _check_actions_fit(policy, env, path, cfg.env)
        env.reset(seed=seed)
        return evaluate(policy, env, episodes)
