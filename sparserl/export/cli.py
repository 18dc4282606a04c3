"""``sparserl export`` and ``sparserl eval --exported``: the CLI side of :mod:`sparserl.export`."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from . import FORMATS, export_policy, format_report, policy_spec_of
from .c_format import SPARSE_STYLES, UNROLL_MAX_NONZEROS
from .quant import DTYPES, SCALES
from .storage import export_report

if TYPE_CHECKING:
    from ..evaluation import EvalResult

LOAD_HINTS = {
    "torch": "load: torch.export.load(PATH).module()(obs_batch)  # (B, obs_dim) float32",
    "onnx": "load: onnxruntime.InferenceSession(PATH).run(None, {'obs': obs_batch})[0]",
    "npz": "load: from sparserl.runtime import Policy; Policy.load(PATH).act(obs)  # numpy only",
    "c": "build: cc -std=c99 -O2 -c PATH (call PREFIX_act(obs, out); see the .h); "
         "or run it: sparserl eval --exported PATH --env ENV_ID",
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
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="weight type: int8 (npz and c only) stores int8 weights with float scales and sums "
                             "in int32; the report states its action error against float32 (default: float32)")
    parser.add_argument("--int8-scales", choices=SCALES, default="row",
                        help="int8 weight scales: one per output row or one per layer (default: row)")
    c_group = parser.add_argument_group("C output (--format c)")
    c_group.add_argument("--c-style", choices=SPARSE_STYLES, default="auto",
                         help="sparse layers as value/index tables (arrays: least flash), as straight-line code "
                              "with the weights as literals (unrolled: fastest, larger), or unrolled up to "
                              f"{UNROLL_MAX_NONZEROS:,} non-zeros per layer (auto) (default: auto)")
    c_group.add_argument("--c-prefix", default="sparserl", metavar="NAME",
                         help="prefix of every C symbol and macro, so two policies link into one firmware "
                              "(default: sparserl)")
    c_group.add_argument("--c-example", action="store_true",
                         help="also write test vectors (STEM_vectors.h), an example STEM_main.c that checks "
                              "them and a Makefile snippet (STEM.mk)")
    return parser


def add_exported_argument(eval_parser: argparse.ArgumentParser) -> None:
    eval_parser.add_argument("--exported", metavar="PATH",
                             help="evaluate an exported policy instead of the checkpoint: a .npz, a generated "
                                  ".c (compiled here with cc), a compiled shared library (.so), an .onnx or a "
                                  "torch .pt2; without a run directory give --env")


def _check_export_flags(ns: argparse.Namespace) -> None:
    """C-only flags with another format would be silently ignored: say so instead."""
    from .c_format import check_prefix
    check_prefix(ns.c_prefix)
    if ns.format != "c":
        given = [f for f, v, d in (("--c-style", ns.c_style, "auto"), ("--c-prefix", ns.c_prefix, "sparserl"),
                                   ("--c-example", ns.c_example, False)) if v != d]
        if given:
            raise UserError(f"{', '.join(given)} only apply to --format c, got --format {ns.format}")


def rollout_observations(agent, env, n: int = 256, seed: int = 0):
    """Up to ``n`` observations the policy itself visits in ``env`` (seeded): realistic probe
    inputs for the int8 error report and the C test vectors."""
    import numpy as np
    obs_list = []
    obs, _ = env.reset(seed=seed)
    while len(obs_list) < n:
        obs_list.append(np.asarray(obs, np.float32))
        obs, _, terminated, truncated, _ = env.step(agent.act(obs))
        if terminated or truncated:
            obs, _ = env.reset()
    return np.stack(obs_list)


def cmd_export(ns: argparse.Namespace) -> int:
    _check_export_flags(ns)
    wants_probes = ns.dtype == "int8" or ns.c_example
    probe_obs, probe = None, None
    if str(ns.dir).endswith(".zip"):  # a Stable-Baselines3 model (sparse or shrunk by our callbacks)
        try:
            from ..integrations import sb3
        except ImportError:
            raise UserError("exporting an SB3 zip needs stable-baselines3: pip install 'sparserl[sb3]'") from None
        cls = sb3.algorithm_of_zip(ns.dir)
        model = sb3.load_zip_safely(ns.dir, cls)  # never unpickles the zip
        source = sb3.policy_spec(model)
        what = f"the SB3 {cls.__name__} policy"
    else:
        from ..model_file import load_agent
        cfg, source, _ = load_agent(ns.dir, with_env=False)
        what = f"the {cfg.algo}/{cfg.method} policy for {cfg.env}"
        if wants_probes:
            from ..envs import make_env
            try:  # the run's own env (never importing a module:Class id); else standard-normal probes
                env = make_env(cfg.env, kwargs=cfg.env_kwargs, allow_import=False)
                probe_obs, probe = rollout_observations(source, env), f"visited by the policy in {cfg.env}"
            except UserError:
                pass
    report = export_policy(source, ns.format, ns.out, overwrite=ns.overwrite, c_prefix=ns.c_prefix,
                           c_style=ns.c_style, dtype=ns.dtype, scales=ns.int8_scales, c_example=ns.c_example,
                           probe_obs=probe_obs, probe=probe)
    extra = f" and {Path(ns.out).with_suffix('.h')}" if ns.format == "c" else ""
    dtype = f" ({ns.dtype} weights)" if ns.dtype != "float32" else ""
    print(f"wrote {what} as {ns.format}{dtype}: {ns.out}{extra}")
    if ns.format == "c" and ns.c_example:
        from .c_format import example_names
        vec, main, mk = (Path(ns.out).parent / n for n in example_names(Path(ns.out).name))
        print(f"test vectors: {vec}; example: {main}; Makefile snippet: {mk} "
              f"(check the build: make -C {mk.parent} -f {mk.name} {Path(ns.out).stem}_check)")
    print(format_report(report))
    print(LOAD_HINTS[ns.format].replace("PATH", repr(str(ns.out))).replace("PREFIX", ns.c_prefix))
    return 0


def size_section(agent) -> str:
    """The ``sparserl flops`` section: the deployed policy's per-layer stored form and size."""
    return "== deployed policy (sparserl export): stored form and size\n" + format_report(
        export_report(policy_spec_of(agent)))


class _BatchOfOne:
    """``act(obs)`` for the torch and ONNX exports, which take batches: one observation in,
    one action out (an int for argmax heads)."""

    def __init__(self, run, obs_shape, discrete: bool | None):
        self.run, self.obs_shape, self.discrete = run, obs_shape, discrete
        self.obs_dim = None if obs_shape is None else int(__import__("numpy").prod(obs_shape))

    def act(self, obs):
        import numpy as np
        out = np.asarray(self.run(np.asarray(obs, np.float32)[None]))[0]
        return int(out) if out.ndim == 0 else out.astype(np.float32)


def _onnx_policy(path: Path) -> _BatchOfOne:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(f"--exported {path}: evaluating ONNX needs onnxruntime: pip install onnxruntime") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = inp.shape[1:]
    known = all(isinstance(d, int) for d in shape)
    return _BatchOfOne(lambda x: session.run(None, {inp.name: x})[0], tuple(shape) if known else None, None)


def _torch_policy(path: Path) -> _BatchOfOne:
    import torch
    module = torch.export.load(str(path)).module()

    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()
    return _BatchOfOne(run, None, None)


def _library_prefix(path: Path) -> str:
    """The symbol prefix of a compiled (or generated) policy: the name before ``_obs_dim``, read
    from the file itself, so a policy exported with --c-prefix needs no flag to be evaluated."""
    import re
    text = path.read_bytes()
    pattern = rb"const int ([A-Za-z_][A-Za-z0-9_]*)_obs_dim" if path.suffix == ".c" else rb"([A-Za-z_][A-Za-z0-9_]*)_obs_dim\x00"
    found = re.findall(pattern, text)
    names = sorted({m.decode().lstrip("_") for m in found})
    return names[0] if len(names) == 1 else "sparserl"


def load_exported(path: str | Path, workdir: str | Path):
    """A policy object with ``act(obs)`` from a ``.npz``, a ``.so``, a generated ``.c`` (compiled
    into ``workdir``), an ``.onnx`` (onnxruntime) or a torch ``.pt2``."""
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
            return CPolicy(lib, _library_prefix(path))
        if suffix in (".so", ".dylib", ".dll"):
            return CPolicy(path, _library_prefix(path))
        if suffix == ".onnx":
            return _onnx_policy(path)
        if suffix in (".pt2", ".pt"):
            return _torch_policy(path)
    except UserError:
        raise
    except Exception as exc:  # a damaged or foreign file is bad input, whatever the loader raises
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"--exported {path}: cannot load it ({detail})") from None
    raise UserError(f"--exported {path}: expected a .npz, a generated .c, a compiled .so, an .onnx or a .pt2")


def _action_count(policy) -> int | None:
    """How many action values a continuous export gives, where the file says so (a C library's
    act_dim, an npz's tanh scales or clip box); None for ONNX and torch programs."""
    import numpy as np
    if hasattr(policy, "act_dim"):
        return int(policy.act_dim)
    for name in ("action_scale", "action_low"):
        if getattr(policy, name, None) is not None:
            return int(np.asarray(getattr(policy, name)).size)
    return None


def _check_fits(policy, path, env, env_id: str) -> None:
    """An exported policy run in an env it was not made for fails in one line, not in numpy: a
    DQN export (argmax, an index) on a continuous env, or the reverse, would send the env
    actions of the wrong kind."""
    import numpy as np
    from gymnasium import spaces
    obs_dim = int(np.prod(env.observation_space.shape))
    if getattr(policy, "obs_dim", None) is not None and policy.obs_dim != obs_dim:
        raise UserError(f"--exported {path} takes {policy.obs_dim} observation values, but {env_id} has {obs_dim}")
    discrete = getattr(policy, "discrete", None)
    if discrete is None and hasattr(policy, "head"):
        discrete = policy.head == "argmax"
    space = env.action_space
    if discrete is not None and discrete != isinstance(space, spaces.Discrete):
        kind = "discrete (argmax) actions" if discrete else "continuous actions"
        raise UserError(f"--exported {path} gives {kind}, but {env_id} takes {space}; allowed: an export "
                        f"of a policy trained for this env's action space")
    n_out = None if discrete is not False else _action_count(policy)
    if n_out is not None and n_out != int(np.prod(space.shape)):
        raise UserError(f"--exported {path} gives {n_out} action values, but {env_id} takes {space}")


def evaluate_exported(run_dir: str | Path | None, path: str | Path, episodes: int, seed: int, env=None,
                      trust_env_module: bool = False) -> EvalResult:
    """Mean and std return of the exported policy at ``path`` on the run's environment (or the
    env id the user gave; without a run directory the id is required), episodes seeded exactly
    as ``sparserl eval`` seeds the checkpoint's. The result is an ``evaluation.EvalResult``: it
    also carries the collision rate (highway-env)."""
    from ..evaluation import evaluate

    if run_dir is None:
        from ..envs import make_env
        if env is None:
            raise UserError("sparserl eval --exported PATH without a run directory needs --env ENV_ID")
        env_id, live_env = env, make_env(env, allow_import=True)
    else:
        from ..model_file import load_agent
        cfg, _, live_env = load_agent(run_dir, env=env, trust_env_module=trust_env_module)
        env_id = env or f"{cfg.env} (the run's env)"
    with tempfile.TemporaryDirectory() as workdir:
        policy = load_exported(path, workdir)
        _check_fits(policy, path, live_env, env_id)
        live_env.reset(seed=seed)
        try:
            return evaluate(policy, live_env, episodes)
        except UserError:
            raise
        except Exception as exc:  # e.g. a .pt2 made for another observation shape
            detail = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(f"--exported {path} cannot act in {env_id}: {detail}") from None
