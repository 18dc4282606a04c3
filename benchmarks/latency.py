"""act() latency of exported policies: every backend side by side, one run, one thread.

    .venv/bin/python benchmarks/latency.py --repeats 5 [--results-md docs/RESULTS.md]

Hopper-sized TD3 actors (11 observations, 3 actions, tanh head): dense 256x256, 90/95/98%
unstructured-sparse 256x256 (ERK allocation, random masks and weights) and a structurally
pruned 18x18 one.  For each actor and backend: latency of one act() on one observation
(microseconds) and throughput at batch 256 (observations per second).  Backends: torch eager
as a sparserl run's actor is (dense kernels on weights with exact zeros), torch with the mask
multiplied in each call, torch CSR weights, the ``torch.export`` module, onnxruntime, the npz
runtime (dense compute and CSR compute), the generated C through ctypes, and the generated C
in a C loop without Python (index-array and unrolled sparse layers).  The machine's scalar
multiply-add throughput is measured with a C loop of independent multiply-adds; "C loop /
ideal" = measured time over (non-zero weights / that throughput).  Cells are timed in short
chunks, in rotation within each repeat (so machine noise hits all alike), and the best chunk
is reported (the timeit convention: on a shared machine the minimum is the time least
disturbed by other processes; the multiply-add rate is measured the same way).  The weights
are random, not trained: about half the hidden ReLUs are active, and the C code skips the
inactive ones in dense layers, so a trained actor's activity shifts the C numbers somewhat.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread everywhere (before numpy/torch load BLAS)

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sparserl.algos.td3 import Actor  # noqa: E402
from sparserl.export import export_policy, policy_spec_of  # noqa: E402
from sparserl.export.c_format import compile_c, find_compiler, write_c  # noqa: E402
from sparserl.export.spec import PolicySpec  # noqa: E402
from sparserl.runtime import CPolicy, Policy  # noqa: E402
from sparserl.sparse import layer_nonzero_counts  # noqa: E402

OBS_DIM, ACT_DIM, N_OBS = 11, 3, 64
ACTORS = (("dense 256x256", None, (256, 256)), ("90% sparse", 0.90, (256, 256)),
          ("95% sparse", 0.95, (256, 256)), ("98% sparse", 0.98, (256, 256)),
          ("structured 18x18", None, (18, 18)))

MAC_PROGRAM = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>
#define N 4096
static float a[N], b[N];
int main(void)
{
    float acc[8] = {0};
    double best = 1e30;
    for (int k = 0; k < N; ++k) { a[k] = 1.0f + (float)(k % 7) * 1e-3f; b[k] = 1.0f - (float)(k % 5) * 1e-3f; }
    for (int rep = 0; rep < 50; ++rep) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < 100; ++r)
            for (int k = 0; k < N; k += 8) {
                acc[0] += a[k] * b[k];         acc[1] += a[k + 1] * b[k + 1];
                acc[2] += a[k + 2] * b[k + 2]; acc[3] += a[k + 3] * b[k + 3];
                acc[4] += a[k + 4] * b[k + 4]; acc[5] += a[k + 5] * b[k + 5];
                acc[6] += a[k + 6] * b[k + 6]; acc[7] += a[k + 7] * b[k + 7];
            }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
        if (s < best) best = s;
    }
    printf("%.6e %f\n", 100.0 * N / best, acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7]);
    return 0;
}
"""


def driver_source(header: str, obs: np.ndarray) -> str:
    """A C program timing ``sparserl_act`` over the benchmark's observations (ns per call)."""
    rows = ",\n    ".join("{" + ", ".join(f"{v:.9g}f" for v in row) + "}" for row in obs)
    return f"""#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "{header}"
static const float obs[{len(obs)}][SPARSERL_OBS_DIM] = {{
    {rows}
}};
int main(int argc, char **argv)
{{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    int reps = argc > 2 ? atoi(argv[2]) : 50;
    float out[SPARSERL_OUT_DIM];
    volatile float sink = 0.0f;
    for (int rep = 0; rep < reps; ++rep) {{
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long i = 0; i < n; ++i) {{ sparserl_act(obs[i % {len(obs)}], out); sink += out[0]; }}
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("%.3f\\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n);
    }}
    return sink == 12345.0f;
}}
"""


def make_actor(sparsity, hidden, seed: int) -> tuple[Actor, dict]:
    torch.manual_seed(seed)
    actor = Actor(OBS_DIM, ACT_DIM, list(hidden), -np.ones(ACT_DIM, np.float32), np.ones(ACT_DIM, np.float32))
    masks = {}
    if sparsity is not None:
        layers = actor.net.linear_layers()
        shapes = {str(i): tuple(m.weight.shape) for i, m in enumerate(layers)}
        counts = layer_nonzero_counts(shapes, sparsity, "erk")
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for i, m in enumerate(layers):
                flat = torch.zeros(m.weight.numel(), dtype=torch.bool)
                flat[torch.randperm(m.weight.numel(), generator=gen)[:counts[str(i)]]] = True
                masks[i] = flat.view_as(m.weight)
                m.weight.mul_(masks[i])
    return actor.eval(), masks


def torch_act(module):
    @torch.no_grad()
    def act(obs):  # what TD3.act does
        return module(torch.as_tensor(np.asarray(obs, dtype=np.float32))).numpy()
    return act


def masked_act(actor: Actor, masks: dict):
    layers = actor.net.linear_layers()

    @torch.no_grad()
    def act(obs):
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        for i, m in enumerate(layers):
            x = F.linear(x, m.weight * masks[i], m.bias)
            if i < len(layers) - 1:
                x = torch.relu(x)
        return (torch.tanh(x) * actor.scale + actor.bias).numpy()
    return act


def csr_act(actor: Actor):
    import warnings
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        layers = [(m.weight.detach().to_sparse_csr(), m.bias.detach()) for m in actor.net.linear_layers()]

    @torch.no_grad()
    def act(obs):
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        single = x.dim() == 1
        xt = x.reshape(-1, OBS_DIM).T  # (in, B): CSR @ dense
        for i, (w, b) in enumerate(layers):
            xt = torch.sparse.mm(w, xt) + b[:, None]
            if i < len(layers) - 1:
                xt = torch.relu(xt)
        y = torch.tanh(xt.T) * actor.scale + actor.bias
        return (y[0] if single else y).numpy()
    return act


def onnx_act(path: Path):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def act(obs):
        x = np.asarray(obs, dtype=np.float32)
        y = sess.run(None, {"obs": x.reshape(-1, OBS_DIM)})[0]
        return y[0] if x.ndim == 1 else y
    return act


def exported_torch_act(path: Path):
    module = torch.export.load(str(path)).module()

    @torch.no_grad()
    def act(obs):
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        y = module(x.reshape(-1, OBS_DIM))
        return (y[0] if x.dim() == 1 else y).numpy()
    return act


def time_chunk(fn, inputs, seconds: float) -> float:
    """Seconds per call over a chunk sized to last about ``seconds``."""
    n = max(1, int(seconds / max(_probe(fn, inputs), 1e-7)))
    t0 = time.perf_counter()
    for i in range(n):
        fn(inputs[i % len(inputs)])
    return (time.perf_counter() - t0) / n


def _probe(fn, inputs) -> float:
    t0 = time.perf_counter()
    for i in range(3):
        fn(inputs[i % len(inputs)])
    return (time.perf_counter() - t0) / 3


def c_loop_ns(exe: Path, calls: int, reps: int) -> float:
    """Best ns per call over ``reps`` chunks of ``calls`` calls."""
    out = subprocess.run([str(exe), str(calls), str(reps)], capture_output=True, text=True, check=True).stdout
    return min(float(x) for x in out.split())


def mac_rate(exe: Path) -> float:
    return float(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timing rounds (best chunk reported)")
    parser.add_argument("--seconds", type=float, default=0.005, help="length of one timed chunk per cell")
    parser.add_argument("--c-calls", type=int, default=500, help="calls per timed chunk of the C loop")
    parser.add_argument("--results-md", default=None, metavar="PATH",
                        help="replace the 'Policy export latency' section of this Markdown file")
    parser.add_argument("--workdir", default=None, help="keep the exported files here (default: a temp dir)")
    args = parser.parse_args()
    if find_compiler() is None:
        sys.exit("benchmarks/latency.py needs a C compiler (cc or $CC)")
    torch.set_num_threads(1)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sparserl-latency-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(N_OBS, OBS_DIM)).astype(np.float32)
    batches = [rng.normal(size=(256, OBS_DIM)).astype(np.float32) for _ in range(4)]

    mac_src = work / "macs.c"
    mac_src.write_text(MAC_PROGRAM)
    mac_exe = compile_c([mac_src], work / "macs", shared=False, extra_flags=("-fno-tree-vectorize", "-fno-tree-slp-vectorize"))
    mac_rates = []

    cells: dict[tuple[str, str], dict] = {}   # (backend, actor) -> {"b1": fn, "b256": fn | None}
    info = {}
    for k, (label, sparsity, hidden) in enumerate(ACTORS):
        actor, masks = make_actor(sparsity, hidden, seed=k)
        spec = policy_spec_of(PolicySpec.from_linears(actor.net.linear_layers(), head="tanh", obs_shape=(OBS_DIM,),
                                                      action_scale=actor.scale, action_offset=actor.bias,
                                                      reference_hidden=(256, 256)))
        d = work / f"actor{k}"
        d.mkdir(exist_ok=True)
        report = export_policy(spec, "npz", d / "policy.npz")
        export_policy(spec, "onnx", d / "policy.onnx")
        export_policy(spec, "torch", d / "policy.pt2")
        fns = {"torch eager (sparserl actor)": torch_act(actor)}
        if masks:
            fns["torch eager, W*mask per call"] = masked_act(actor, masks)
            fns["torch CSR weights"] = csr_act(actor)
        fns["torch.export module"] = exported_torch_act(d / "policy.pt2")
        fns["onnxruntime"] = onnx_act(d / "policy.onnx")
        fns["npz runtime (dense compute)"] = Policy.load(d / "policy.npz").act
        fns["npz runtime (CSR compute)"] = Policy.load(d / "policy.npz", densify=False).act
        loops = {}
        for style in ("auto", "arrays", "unrolled"):
            src = d / f"policy_{style}.c"
            write_c(spec, src, sparse_style=style)
            if style == "auto":
                fns["C via ctypes"] = CPolicy(compile_c([src], d / "policy.so")).act
                continue
            (d / "driver.c").write_text(driver_source(src.with_suffix(".h").name, obs))
            loops[style] = compile_c([d / "driver.c", src], d / f"driver_{style}", shared=False)
        reference = torch_act(actor)(obs)
        worst = max(float(np.abs(np.asarray(f(obs), np.float64) - reference).max()) for f in fns.values())
        nnz = sum(r.nonzeros for r in report.layers)
        info[label] = dict(nnz=nnz, bytes=report.nbytes, dense_bytes=report.reference_dense_nbytes, worst=worst,
                           loops=loops, forms="/".join(r.form for r in report.layers), hidden=report.hidden)
        for backend, fn in fns.items():
            cells[(backend, label)] = {"fn": fn, "b1": [], "b256": []}

    for _ in range(args.repeats):
        mac_rates.append(mac_rate(mac_exe))
        for cell in cells.values():
            cell["b1"].append(time_chunk(cell["fn"], list(obs), args.seconds))
            cell["b256"].append(time_chunk(cell["fn"], batches, args.seconds))
        for label in info:
            for style, exe in info[label]["loops"].items():
                info[label].setdefault(f"loop_{style}", []).append(c_loop_ns(exe, args.c_calls, 5))

    labels = [a[0] for a in ACTORS]
    backends = list(dict.fromkeys(b for b, _ in cells))
    lat = {key: min(c["b1"]) * 1e6 for key, c in cells.items()}
    thr = {key: 256 / min(c["b256"]) for key, c in cells.items()}
    rate = max(mac_rates)
    for label in labels:
        for style in ("arrays", "unrolled"):
            ns = min(info[label][f"loop_{style}"])
            lat[(f"C loop, no Python ({style})", label)] = ns / 1e3
            thr[(f"C loop, no Python ({style})", label)] = 1e9 / ns
    backends += ["C loop, no Python (arrays)", "C loop, no Python (unrolled)"]
    dense_torch = lat[("torch eager (sparserl actor)", labels[0])]

    def table(title, values, fmt):
        rows = [f"**{title}**", "", "| backend | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for b in backends:
            rows.append(f"| {b} | " + " | ".join(fmt(values[(b, lab)]) if (b, lab) in values else "–"
                                                  for lab in labels) + " |")
        return rows

    lines = ["Actors (obs 11, act 3): exported size and work.", "",
             "| actor | exported hidden | stored forms | non-zero weights (MACs) | bytes | dense fp32 (256x256) "
             "| max abs diff vs torch |", "|---|---|---|---|---|---|---|"]
    for label in labels:
        i = info[label]
        lines.append(f"| {label} | {i['hidden']} | {i['forms']} | {i['nnz']:,} | {i['bytes']:,} | "
                     f"{i['dense_bytes']:,} | {i['worst']:.1e} |")
    lines += [""] + table("act() latency, batch 1 (µs per call, best chunk)", lat, lambda v: f"{v:.2f}")
    lines += [""] + table("throughput, batch 256 (observations/s; C rows: one call per observation)", thr,
                          lambda v: f"{v:,.0f}")
    lines += ["", f"Scalar multiply-add throughput (C, 8 independent accumulators, no SIMD): "
                  f"{rate / 1e9:.2f} G multiply-adds/s.", "",
              "| actor | MACs | ideal at that rate (µs) | C loop arrays (µs) | C loop unrolled (µs) | best / ideal "
              "| best C loop speed-up vs dense torch eager |", "|---|---|---|---|---|---|---|"]
    best_compressed = {}
    for label in labels:
        ideal = info[label]["nnz"] / rate * 1e6
        a, u = lat[("C loop, no Python (arrays)", label)], lat[("C loop, no Python (unrolled)", label)]
        lines.append(f"| {label} | {info[label]['nnz']:,} | {ideal:.2f} | {a:.3f} | {u:.3f} | {min(a, u) / ideal:.2f} | "
                     f"{dense_torch / min(a, u):.0f}x |")
        python_backends = {b: lat[(b, label)] for b in backends if (b, label) in lat and not b.startswith("C loop")}
        best_compressed[label] = min(python_backends.items(), key=lambda kv: kv[1])
    lines += ["", "Fastest act() callable from Python at batch 1, against dense torch eager "
                  f"({dense_torch:.1f} µs):", ""]
    for label in labels[1:]:
        b, v = best_compressed[label]
        lines.append(f"- {label}: {b}, {v:.2f} µs = {dense_torch / v:.1f}x faster")
    speedups = {label: dense_torch / best_compressed[label][1] for label in labels[1:]}
    ratios = {label: min(lat[("C loop, no Python (arrays)", label)], lat[("C loop, no Python (unrolled)", label)])
              / (info[label]["nnz"] / rate * 1e6) for label in labels[1:]}

    def verdict(ok: dict) -> str:
        return "met for all" if all(ok.values()) else (
            "NOT met for " + ", ".join(k for k, v in ok.items() if not v)
            + ("; met for " + ", ".join(k for k, v in ok.items() if v) if any(ok.values()) else ""))
    lines += ["", "Targets of issue 13, on this run:", "",
              f"- compressed act() at batch 1 >= 10x faster than dense torch eager: "
              f"{verdict({k: v >= 10 for k, v in speedups.items()})} "
              f"({', '.join(f'{v:.1f}x' for v in speedups.values())})",
              f"- C loop within 2x of its multiply-adds at the measured scalar rate: "
              f"{verdict({k: v <= 2 for k, v in ratios.items()})} "
              f"({', '.join(f'{v:.2f}x' for v in ratios.values())})"]
    text = "\n".join(lines)
    print(text)
    if args.results_md:
        from sparserl.bench.results_md import benchmark_header, upsert_section
        head = benchmark_header("Policy export latency", sys.argv,
                                f", onnxruntime 1 thread, numpy 1 BLAS thread, cc -O2; {args.repeats} rounds")
        upsert_section(args.results_md, "policy-export-latency", "\n".join(head + ["", __doc__.split("\n\n", 2)[2].strip(), "", text]))
        print(f"updated the policy-export-latency section of {args.results_md}")


if __name__ == "__main__":
    main()
