"""``c`` export: one dependency-free C99 source file plus its header.

The generated API (``prefix`` defaults to ``sparserl``)::

    void sparserl_act(const float *obs, float *out);      /* the action; DQN: out[0] = index */
    void sparserl_act_batch(const float *obs, float *out, int n);
    int  sparserl_act_discrete(const float *obs);         /* greedy action (argmax heads only) */
    void sparserl_outputs(const float *obs, float *out);  /* last layer's raw outputs */
    extern const int sparserl_obs_dim, sparserl_out_dim, sparserl_act_dim, sparserl_discrete;

No malloc, no state, no libm beyond ``tanhf`` (continuous heads only): the activations live
on the stack (4 bytes per hidden neuron).  Every output is summed in one order, bias first,
then the inputs in ascending order, as a row-by-row dot product does.

* Dense-stored layers loop over a static ``[n_in][n_out]`` array column by column,
  ``y += W[:, j] * x_j``: the inner loop has no loop-carried dependency, so gcc -O2
  vectorises it, and inputs that are exactly zero (after a ReLU about half are) are skipped.
* Sparse (CSR-stored) layers hold only their non-zeros, row by row: either the npz file's
  CSR arrays with a loop (``arrays``) or straight-line code, one line per output with the
  weights as literals (``unrolled``).  benchmarks/latency.py measured the unrolled form
  as fast as the arrays on a 90%-sparse Hopper actor and 1.2-1.4x faster at 95% and 98%
  (column-wise scatter variants that skip zero inputs, and rows interleaved in groups,
  were tried and were no faster), so ``auto`` unrolls up to :data:`UNROLL_MAX_NONZEROS`
  non-zeros per layer.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..errors import UserError
from .spec import PolicySpec
from .storage import StoredLayer, stored_layers

SPARSE_STYLES = ("auto", "arrays", "unrolled")
UNROLL_MAX_NONZEROS = 8_192
"""``auto``: sparse layers up to this many non-zeros are unrolled, larger ones use index
arrays: unrolled code takes ~40 bytes of source per non-zero, and gcc -O2 needed ~2 s of
CPU for 4,000 unrolled non-zeros but ~30 s of wall time (on a loaded machine) for 20,000."""
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Werror")


def c_float(v: float) -> str:
    """A float literal that reads back as exactly the same float32 (9 significant digits)."""
    s = "%.9g" % float(v)
    if not any(c in s for c in ".en"):
        s += ".0"
    return s + "f"


def _array(ctype: str, name: str, values, fmt=str, per_line: int = 8) -> str:
    values = list(values)
    lines = [", ".join(fmt(v) for v in values[k:k + per_line]) for k in range(0, len(values), per_line)]
    return f"static const {ctype} {name}[{len(values)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def _ctype(dtype: np.dtype) -> str:
    return "uint16_t" if dtype == np.uint16 else "int32_t"


def _layer_code(i: int, layer: StoredLayer, src: str, dst: str, style: str) -> tuple[str, str]:
    """(static data, function body) computing ``dst = W src + b`` (no activation)."""
    n_in, n_out = layer.n_in, layer.n_out
    head = f"    /* layer {i}: {n_in} -> {n_out}, {style}, {layer.nonzeros} non-zeros */"
    if style == "dense":
        data = _array("float", f"L{i}_B", layer.bias, c_float)
        data += _array("float", f"L{i}_W", layer.weight.T.reshape(-1), c_float)  # [n_in][n_out]
        body = [head,
                f"    for (int i = 0; i < {n_out}; ++i) {dst}[i] = L{i}_B[i];",
                f"    for (int j = 0; j < {n_in}; ++j) {{",
                f"        const float x = {src}[j];",
                "        if (x != 0.0f) {",
                f"            const float *w = L{i}_W + j * {n_out};",
                f"            for (int i = 0; i < {n_out}; ++i) {dst}[i] += w[i] * x;",
                "        }",
                "    }"]
        return data, "\n".join(body)
    if style == "unrolled":
        body = [head]
        for r in range(n_out):
            lo, hi = int(layer.indptr[r]), int(layer.indptr[r + 1])
            # a + (-w) * x == a - w * x exactly (negation is exact): print the readable form
            terms = "".join(f" {'-' if v < 0 else '+'} {c_float(abs(v))} * {src}[{c}]"
                            for v, c in zip(layer.data[lo:hi], layer.indices[lo:hi]))
            body.append(f"    {dst}[{r}] = {c_float(layer.bias[r])}{terms};")
        return "", "\n".join(body)
    data = (_array("float", f"L{i}_B", layer.bias, c_float) + _array("float", f"L{i}_V", layer.data, c_float)
            + _array(_ctype(layer.indices.dtype), f"L{i}_C", layer.indices)
            + _array(_ctype(layer.indptr.dtype), f"L{i}_P", layer.indptr))
    body = [head,
            f"    for (int i = 0; i < {n_out}; ++i) {{",
            f"        float s = L{i}_B[i];",
            f"        for (int k = L{i}_P[i]; k < L{i}_P[i + 1]; ++k) s += L{i}_V[k] * {src}[L{i}_C[k]];",
            f"        {dst}[i] = s;",
            "    }"]
    return data, "\n".join(body)


def layer_styles(spec: PolicySpec, sparse_style: str = "auto") -> list[str]:
    """Per layer: ``dense``, ``arrays`` or ``unrolled``."""
    if sparse_style not in SPARSE_STYLES:
        raise UserError(f"unknown C sparse style {sparse_style!r}; allowed: {', '.join(SPARSE_STYLES)}")
    out = []
    for layer in stored_layers(spec):
        if layer.form == "dense":
            out.append("dense")
        elif sparse_style == "auto":
            out.append("unrolled" if layer.nonzeros <= UNROLL_MAX_NONZEROS else "arrays")
        else:
            out.append(sparse_style)
    return out


def _check_layers(layers) -> None:
    """The runtime's checks (:func:`sparserl.runtime.check_layer`) before any C is written: a
    CSR index of -1 or out of range would be compiled into an out-of-bounds read."""
    from ..runtime import check_layer
    for i, layer in enumerate(layers):
        try:
            check_layer(i, layer.form, layer.n_out, layer.n_in, layer.bias, layer.weight, layer.data,
                        layer.indices, layer.indptr)
        except ValueError as exc:
            raise UserError(f"cannot generate C: {exc}") from None


def generate_c(spec: PolicySpec, header_name: str, prefix: str = "sparserl",
               sparse_style: str = "auto") -> tuple[str, str]:
    """(C source, header) of the policy."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise UserError(f"C prefix {prefix!r} is not a C identifier")
    layers, styles = stored_layers(spec), layer_styles(spec, sparse_style)
    _check_layers(layers)
    discrete = spec.head == "argmax"
    guard, upper, p = f"{prefix.upper()}_POLICY_H", prefix.upper(), prefix
    action_doc = ("out[0] = the greedy action index (as a float)" if discrete else
                  f"tanh(outputs) * action_scale + action_offset: {spec.out_dim} floats")
    header = f"""/* Generated by sparserl export: a {"discrete (argmax)" if discrete else "continuous (tanh)"} policy,
 * hidden widths {spec.hidden}. Dependency-free C99: no malloc, no state, {"no libm" if discrete else "libm's tanhf only"}. */
#ifndef {guard}
#define {guard}

#define {upper}_OBS_DIM {spec.obs_dim}   /* floats in one (flattened) observation */
#define {upper}_OUT_DIM {spec.out_dim}   /* raw outputs: {"Q-values" if discrete else "pre-tanh actions"} */
#define {upper}_ACT_DIM {spec.action_dim}   /* floats {p}_act writes */
#define {upper}_DISCRETE {int(discrete)}

/* The same numbers as variables, for callers that load the library dynamically. */
extern const int {p}_obs_dim, {p}_out_dim, {p}_act_dim, {p}_discrete;

/* The last layer's raw outputs (before {"argmax" if discrete else "tanh"}): {upper}_OUT_DIM floats. */
void {p}_outputs(const float *obs, float *out);
/* The action: {action_doc}. */
void {p}_act(const float *obs, float *out);
/* n observations (n * {upper}_OBS_DIM floats) -> n actions (n * {upper}_ACT_DIM floats). */
void {p}_act_batch(const float *obs, float *out, int n);
"""
    if discrete:
        header += f"/* The greedy action index (the first maximum of the outputs). */\nint {p}_act_discrete(const float *obs);\n"
    header += f"\n#endif /* {guard} */\n"

    statics, bodies, src = [], [], "obs"
    for i, (layer, style) in enumerate(zip(layers, styles)):
        dst = "out" if i == len(layers) - 1 else f"h{i}"
        if dst != "out":
            bodies.append(f"    float {dst}[{layer.n_out}];")
        data, body = _layer_code(i, layer, src, dst, style)
        statics.append(data)
        bodies.append(body)
        if dst != "out":
            bodies.append(f"    for (int i = 0; i < {layer.n_out}; ++i) if ({dst}[i] < 0.0f) {dst}[i] = 0.0f;  /* ReLU */")
        src = dst
    includes = ("#include <stdint.h>\n" if "arrays" in styles else "") + ("" if discrete else "#include <math.h>\n")
    if discrete:
        head = f"""int {p}_act_discrete(const float *obs)
{{
    float q[{spec.out_dim}];
    int best = 0;
    {p}_outputs(obs, q);
    for (int i = 1; i < {spec.out_dim}; ++i) if (q[i] > q[best]) best = i;
    return best;
}}

void {p}_act(const float *obs, float *out)
{{
    out[0] = (float){p}_act_discrete(obs);
}}
"""
    else:
        squash = "\n".join(f"    out[{i}] = tanhf(out[{i}]) * {c_float(s)} + {c_float(o)};"
                           for i, (s, o) in enumerate(zip(spec.action_scale, spec.action_offset)))
        head = f"""void {p}_act(const float *obs, float *out)
{{
    {p}_outputs(obs, out);
{squash}
}}
"""
    source = f"""/* Generated by sparserl export. Layers: {", ".join(styles)}. */
{includes}#include "{header_name}"

const int {p}_obs_dim = {spec.obs_dim};
const int {p}_out_dim = {spec.out_dim};
const int {p}_act_dim = {spec.action_dim};
const int {p}_discrete = {int(discrete)};

{"".join(statics)}
void {p}_outputs(const float *obs, float *out)
{{
{chr(10).join(bodies)}
}}

{head}
void {p}_act_batch(const float *obs, float *out, int n)
{{
    for (int b = 0; b < n; ++b) {p}_act(obs + (long)b * {spec.obs_dim}, out + (long)b * {spec.action_dim});
}}
"""
    return source, header


def write_c(spec: PolicySpec, out_path: Path, prefix: str = "sparserl", sparse_style: str = "auto") -> Path:
    """Write ``out_path`` (must end in ``.c``) and the header next to it; returns the header."""
    out_path = Path(out_path)
    if out_path.suffix != ".c":
        raise UserError(f"--format c writes a .c file and a .h next to it; --out must end in .c, got {out_path}")
    header_path = out_path.with_suffix(".h")
    source, header = generate_c(spec, header_path.name, prefix, sparse_style)
    header_path.write_text(header)
    out_path.write_text(source)
    return header_path


def find_compiler() -> str | None:
    """``$CC`` or ``cc`` if it is on the PATH."""
    cc = os.environ.get("CC", "cc")
    return shutil.which(cc)


def compile_c(sources, out_path: Path, shared: bool = True, extra_flags=()) -> Path:
    """Compile with ``cc -std=c99 -O2 -Wall -Werror`` (+ ``-shared -fPIC``); one-line errors."""
    cc = find_compiler()
    if cc is None:
        raise UserError("no C compiler found (set $CC or install cc) to build the exported C policy")
    cmd = [cc, *CFLAGS, *(("-shared", "-fPIC") if shared else ()), *extra_flags,
           *[str(s) for s in sources], "-o", str(out_path), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["(no message)"])[0]
        raise UserError(f"compiling {', '.join(map(str, sources))} failed: {first[:300]}")
    return Path(out_path)
