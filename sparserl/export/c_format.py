"""``c`` export: one dependency-free C99 source file plus its header.

The generated API (``prefix`` defaults to ``sparserl``)::

    void sparserl_act(const float *obs, float *out);      /* the action; DQN: out[0] = index */
    void sparserl_act_batch(const float *obs, float *out, int n);
    int  sparserl_act_discrete(const float *obs);         /* greedy action (argmax heads only) */
    void sparserl_outputs(const float *obs, float *out);  /* last layer's raw outputs */
    extern const int sparserl_obs_dim, sparserl_out_dim, sparserl_act_dim, sparserl_discrete;

No malloc, no state, no libm beyond ``tanhf`` (tanh heads and Tanh MLPs only): the
activations live on the stack (4 bytes per hidden neuron; int8 adds a byte per layer input).
Every output is summed in one order, bias first, then the inputs in ascending order, as a
row-by-row dot product does.  A ``prefix`` other than ``sparserl`` renames every symbol and
macro, so several policies link into one program.

Tables are declared ``static const <PREFIX>_ROM`` and read through ``<PREFIX>_RD_*`` macros
(:func:`_rom_macros`): on AVR ``-DSPARSERL_USE_PROGMEM`` keeps them in flash, which plain
``static const`` does not.  ``int8`` sources (:mod:`sparserl.export.quant`) hold int8 tables
and sum in int32.

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


_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.int8): "int8_t", np.dtype(np.uint16): "uint16_t",
           np.dtype(np.int32): "int32_t"}
#: the reader macro (``<PREFIX>_RD_<suffix>``) for each table element type
_READERS = {"float": "F", "int8_t": "I8", "uint16_t": "U16", "int32_t": "I32"}


class _Tables:
    """Collects the const tables of one source file and counts their bytes (the flash they
    take besides the code)."""

    def __init__(self, upper: str):
        self.upper = upper
        self.parts: list[str] = []
        self.nbytes = 0

    def add(self, name: str, values: np.ndarray, fmt=str, per_line: int = 8) -> str:
        values = np.asarray(values)
        ctype = _CTYPES[values.dtype]
        flat = values.reshape(-1).tolist()
        lines = [", ".join(fmt(v) for v in flat[k:k + per_line]) for k in range(0, len(flat), per_line)]
        self.parts.append(f"static const {ctype} {name}[{len(flat)}] {self.upper}_ROM = {{\n    "
                          + ",\n    ".join(lines) + "\n};\n")
        self.nbytes += values.nbytes
        return f"{self.upper}_RD_{_READERS[ctype]}"

    def text(self) -> str:
        return "".join(self.parts)


def _float_layer(i: int, layer: StoredLayer, src: str, dst: str, style: str, tables: _Tables) -> str:
    """Body computing ``dst = W src + b`` in float32 (no activation)."""
    n_in, n_out = layer.n_in, layer.n_out
    head = f"    /* layer {i}: {n_in} -> {n_out}, {style}, {layer.nonzeros} non-zeros */"
    if style == "unrolled":
        body = [head]
        for r in range(n_out):
            lo, hi = int(layer.indptr[r]), int(layer.indptr[r + 1])
            # a + (-w) * x == a - w * x exactly (negation is exact): print the readable form
            terms = "".join(f" {'-' if v < 0 else '+'} {c_float(abs(v))} * {src}[{c}]"
                            for v, c in zip(layer.data[lo:hi], layer.indices[lo:hi]))
            body.append(f"    {dst}[{r}] = {c_float(layer.bias[r])}{terms};")
        return "\n".join(body)
    rf = tables.add(f"L{i}_B", layer.bias, c_float)
    if style == "dense":
        tables.add(f"L{i}_W", layer.weight.T, c_float)  # [n_in][n_out]
        body = [head,
                f"    for (int i = 0; i < {n_out}; ++i) {dst}[i] = {rf}(&L{i}_B[i]);",
                f"    for (int j = 0; j < {n_in}; ++j) {{",
                f"        const float x = {src}[j];",
                "        if (x != 0.0f) {",
                f"            const float *w = L{i}_W + j * {n_out};",
                f"            for (int i = 0; i < {n_out}; ++i) {dst}[i] += {rf}(w + i) * x;",
                "        }",
                "    }"]
        return "\n".join(body)
    tables.add(f"L{i}_V", layer.data, c_float)
    rc, rp = tables.add(f"L{i}_C", layer.indices), tables.add(f"L{i}_P", layer.indptr)
    body = [head,
            f"    for (int i = 0; i < {n_out}; ++i) {{",
            f"        float s = {rf}(&L{i}_B[i]);",
            f"        const int end = (int){rp}(&L{i}_P[i + 1]);",
            f"        for (int k = (int){rp}(&L{i}_P[i]); k < end; ++k) s += {rf}(&L{i}_V[k]) * {src}[{rc}(&L{i}_C[k])];",
            f"        {dst}[i] = s;",
            "    }"]
    return "\n".join(body)


def _int8_layer(i: int, layer: StoredLayer, src: str, dst: str, style: str, tables: _Tables) -> str:
    """Body computing ``dst`` from ``src`` with int8 weights, the input quantized on the fly and
    the products summed in int32 (:mod:`sparserl.export.quant`), then rescaled to float."""
    n_in, n_out = layer.n_in, layer.n_out
    per_row = layer.scale.size > 1
    body = [f"    /* layer {i}: {n_in} -> {n_out}, {style} int8 ({'per-row' if per_row else 'per-layer'} scales), "
            f"{layer.nonzeros} non-zeros */",
            f"    int8_t q{i}[{n_in}];",
            f"    const float a{i} = quantize_input({src}, {n_in}, q{i});"]
    if style == "unrolled":
        for r in range(n_out):
            lo, hi = int(layer.indptr[r]), int(layer.indptr[r + 1])
            terms = " ".join(f"{'-' if v < 0 else '+'} (int32_t){abs(int(v))} * q{i}[{c}]"
                             for v, c in zip(layer.data[lo:hi], layer.indices[lo:hi])) or "0"
            scale = c_float(layer.scale[r] if per_row else layer.scale[0])
            body.append(f"    {dst}[{r}] = (float)({terms}) * (a{i} * {scale}) + {c_float(layer.bias[r])};")
        return "\n".join(body)
    rf = tables.add(f"L{i}_B", layer.bias, c_float)
    tables.add(f"L{i}_S", layer.scale, c_float)
    scale = f"{rf}(&L{i}_S[i])" if per_row else f"{rf}(&L{i}_S[0])"
    if style == "dense":
        ri = tables.add(f"L{i}_W", layer.weight.T)  # int8 [n_in][n_out]
        body += [f"    int32_t acc{i}[{n_out}];",
                 f"    for (int i = 0; i < {n_out}; ++i) acc{i}[i] = 0;",
                 f"    for (int j = 0; j < {n_in}; ++j) {{",
                 f"        const int32_t x = q{i}[j];",
                 "        if (x != 0) {",
                 f"            const int8_t *w = L{i}_W + j * {n_out};",
                 f"            for (int i = 0; i < {n_out}; ++i) acc{i}[i] += (int32_t){ri}(w + i) * x;",
                 "        }",
                 "    }",
                 f"    for (int i = 0; i < {n_out}; ++i) {dst}[i] = (float)acc{i}[i] * (a{i} * {scale}) + {rf}(&L{i}_B[i]);"]
        return "\n".join(body)
    ri = tables.add(f"L{i}_V", layer.data)
    rc, rp = tables.add(f"L{i}_C", layer.indices), tables.add(f"L{i}_P", layer.indptr)
    body += [f"    for (int i = 0; i < {n_out}; ++i) {{",
             "        int32_t s = 0;",
             f"        const int end = (int){rp}(&L{i}_P[i + 1]);",
             f"        for (int k = (int){rp}(&L{i}_P[i]); k < end; ++k) s += (int32_t){ri}(&L{i}_V[k]) * q{i}[{rc}(&L{i}_C[k])];",
             f"        {dst}[i] = (float)s * (a{i} * {scale}) + {rf}(&L{i}_B[i]);",
             "    }"]
    return "\n".join(body)


def layer_styles(spec: PolicySpec, sparse_style: str = "auto", dtype: str = "float32", scales: str = "row") -> list[str]:
    """Per layer: ``dense``, ``arrays`` or ``unrolled``."""
    if sparse_style not in SPARSE_STYLES:
        raise UserError(f"unknown C sparse style {sparse_style!r}; allowed: {', '.join(SPARSE_STYLES)}")
    out = []
    for layer in stored_layers(spec, dtype, scales):
        if layer.form == "dense":
            out.append("dense")
        elif sparse_style == "auto":
            out.append("unrolled" if layer.nonzeros <= UNROLL_MAX_NONZEROS else "arrays")
        else:
            out.append(sparse_style)
    return out


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise UserError(f"--c-prefix {prefix!r} is not a C identifier; allowed: letters, digits and _, "
                        f"not starting with a digit")
    return prefix


_QUANTIZE_C = """
/* x ~ a * q with a = max|x| / 127, rounded half away from zero; returns a (0 for all-zero x). */
static float quantize_input(const float *x, int n, int8_t *q)
{
    float amax = 0.0f;
    for (int j = 0; j < n; ++j) {
        const float v = x[j] < 0.0f ? -x[j] : x[j];
        if (v > amax) amax = v;
    }
    if (amax == 0.0f) {
        for (int j = 0; j < n; ++j) q[j] = 0;
        return 0.0f;
    }
    const float inv = 127.0f / amax;
    for (int j = 0; j < n; ++j) {
        const float v = x[j] * inv;
        int32_t r = (int32_t)(v + (v < 0.0f ? -0.5f : 0.5f));
        if (r > 127) r = 127;
        else if (r < -127) r = -127;
        q[j] = (int8_t)r;
    }
    return amax / 127.0f;
}
"""


def _rom_macros(upper: str) -> str:
    """Where the tables live and how they are read, behind macros: plain ``static const`` by
    default; with ``-DSPARSERL_USE_PROGMEM`` (AVR, avr-libc) in flash via ``PROGMEM`` and read
    with ``pgm_read_*`` (without it AVR copies every const table into RAM at start-up). Any
    other target can define ``<PREFIX>_ROM`` and the ``<PREFIX>_RD_*`` readers itself."""
    lines = [f"#if defined(SPARSERL_USE_PROGMEM) && !defined({upper}_ROM)",
             "#include <avr/pgmspace.h>",
             f"#define {upper}_ROM PROGMEM",
             f"#define {upper}_RD_F(p) pgm_read_float(p)",
             f"#define {upper}_RD_I8(p) ((int8_t)pgm_read_byte(p))",
             f"#define {upper}_RD_U16(p) ((uint16_t)pgm_read_word(p))",
             f"#define {upper}_RD_I32(p) ((int32_t)pgm_read_dword(p))",
             "#endif",
             f"#ifndef {upper}_ROM",
             f"#define {upper}_ROM",
             "#endif"]
    for suffix in _READERS.values():
        lines += [f"#ifndef {upper}_RD_{suffix}", f"#define {upper}_RD_{suffix}(p) (*(p))", "#endif"]
    return "\n".join(lines) + "\n"


def stack_buffer_bytes(spec: PolicySpec, styles: list[str], dtype: str = "float32") -> int:
    """Bytes of the arrays one action keeps on the stack: each hidden layer's float32
    activations, for int8 each layer's quantized input (and a dense layer's int32 sums), and
    the Q-values of an argmax head (locals and the call frames come on top)."""
    n = 4 * sum(spec.hidden)
    if dtype == "int8":
        n += sum(int(w.shape[1]) for w in spec.weights)
        n += sum(4 * int(w.shape[0]) for w, st in zip(spec.weights, styles) if st == "dense")
    if spec.head == "argmax":
        n += 4 * spec.out_dim
    return n


def _check_layers(layers) -> None:
    """The runtime's checks (:func:`sparserl.runtime.check_layer`) before any C is written: a
    CSR index of -1 or out of range would be compiled into an out-of-bounds read."""
    from ..runtime import check_layer
    for i, layer in enumerate(layers):
        try:
            check_layer(i, layer.form, layer.n_out, layer.n_in, layer.bias, layer.weight, layer.data,
                        layer.indices, layer.indptr, layer.dtype, layer.scale)
        except ValueError as exc:
            raise UserError(f"cannot generate C: {exc}") from None


def generate_c(spec: PolicySpec, header_name: str, prefix: str = "sparserl",
               sparse_style: str = "auto", dtype: str = "float32", scales: str = "row") -> tuple[str, str]:
    """(C source, header) of the policy."""
    return _generate(spec, header_name, prefix, sparse_style, dtype, scales)[:2]


def _generate(spec: PolicySpec, header_name: str, prefix: str, sparse_style: str, dtype: str,
              scales: str) -> tuple[str, str, dict]:
    check_prefix(prefix)
    layers, styles = stored_layers(spec, dtype, scales), layer_styles(spec, sparse_style, dtype, scales)
    _check_layers(layers)
    discrete = spec.head == "argmax"
    guard, upper, p = f"{prefix.upper()}_POLICY_H", prefix.upper(), prefix
    if spec.head == "argmax":
        action_doc = "out[0] = the greedy action index (as a float)"
    elif spec.head == "tanh":
        action_doc = f"tanh(outputs) * action_scale + action_offset: {spec.out_dim} floats"
    else:
        action_doc = f"the outputs clipped to the action box: {spec.out_dim} floats"
    needs_libm = spec.head == "tanh" or spec.activation == "tanh"
    kind = {"argmax": "discrete (argmax)", "tanh": "continuous (tanh)", "clip": "continuous (clipped)"}[spec.head]
    header = f"""/* Generated by sparserl export: a {kind} policy, {spec.activation} MLP,
 * hidden widths {spec.hidden}, {dtype} weights{" (int32 sums)" if dtype == "int8" else ""}.
 * Dependency-free C99: no malloc, no state, {"libm's tanhf only" if needs_libm else "no libm"}. */
#ifndef {guard}
#define {guard}

#define {upper}_OBS_DIM {spec.obs_dim}   /* floats in one (flattened) observation */
#define {upper}_OUT_DIM {spec.out_dim}   /* raw outputs: {"Q-values" if discrete else "pre-head actions"} */
#define {upper}_ACT_DIM {spec.action_dim}   /* floats {p}_act writes */
#define {upper}_DISCRETE {int(discrete)}
#define {upper}_INT8 {int(dtype == "int8")}

/* The same numbers as variables, for callers that load the library dynamically. */
extern const int {p}_obs_dim, {p}_out_dim, {p}_act_dim, {p}_discrete;

/* The last layer's raw outputs (before the {spec.head} head): {upper}_OUT_DIM floats. */
void {p}_outputs(const float *obs, float *out);
/* The action: {action_doc}. */
void {p}_act(const float *obs, float *out);
/* n observations (n * {upper}_OBS_DIM floats) -> n actions (n * {upper}_ACT_DIM floats). */
void {p}_act_batch(const float *obs, float *out, int n);
"""
    if discrete:
        header += f"/* The greedy action index (the first maximum of the outputs). */\nint {p}_act_discrete(const float *obs);\n"
    header += f"\n#endif /* {guard} */\n"

    tables = _Tables(upper)
    bodies, src = [], "obs"
    for i, (layer, style) in enumerate(zip(layers, styles)):
        dst = "out" if i == len(layers) - 1 else f"h{i}"
        if dst != "out":
            bodies.append(f"    float {dst}[{layer.n_out}];")
        write = _int8_layer if dtype == "int8" else _float_layer
        bodies.append(write(i, layer, src, dst, style, tables))
        if dst != "out":
            if spec.activation == "relu":
                bodies.append(f"    for (int i = 0; i < {layer.n_out}; ++i) if ({dst}[i] < 0.0f) {dst}[i] = 0.0f;  /* ReLU */")
            else:
                bodies.append(f"    for (int i = 0; i < {layer.n_out}; ++i) {dst}[i] = tanhf({dst}[i]);  /* Tanh */")
        src = dst
    includes = "#include <stdint.h>\n" + ("#include <math.h>\n" if needs_libm else "")
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
    elif spec.head == "tanh":
        squash = "\n".join(f"    out[{i}] = tanhf(out[{i}]) * {c_float(s)} + {c_float(o)};"
                           for i, (s, o) in enumerate(zip(spec.action_scale, spec.action_offset)))
        head = f"""void {p}_act(const float *obs, float *out)
{{
    {p}_outputs(obs, out);
{squash}
}}
"""
    else:
        clip = "\n".join(f"    if (out[{i}] < {c_float(lo)}) out[{i}] = {c_float(lo)};\n"
                         f"    if (out[{i}] > {c_float(hi)}) out[{i}] = {c_float(hi)};"
                         for i, (lo, hi) in enumerate(zip(spec.action_low, spec.action_high)))
        head = f"""void {p}_act(const float *obs, float *out)
{{
    {p}_outputs(obs, out);
{clip}
}}
"""
    source = f"""/* Generated by sparserl export. Layers: {", ".join(styles)}; {dtype} weights. */
{includes}#include "{header_name}"

{_rom_macros(upper)}
const int {p}_obs_dim = {spec.obs_dim};
const int {p}_out_dim = {spec.out_dim};
const int {p}_act_dim = {spec.action_dim};
const int {p}_discrete = {int(discrete)};
{_QUANTIZE_C if dtype == "int8" else ""}
{tables.text()}
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
    footprint = {"styles": ", ".join(styles), "dtype": dtype, "tables_bytes": tables.nbytes,
                 "buffer_bytes": stack_buffer_bytes(spec, styles, dtype), "prefix": prefix}
    return source, header, footprint


def write_c(spec: PolicySpec, out_path: Path, prefix: str = "sparserl", sparse_style: str = "auto",
            dtype: str = "float32", scales: str = "row", example_obs=None) -> Path:
    """Write ``out_path`` (must end in ``.c``) and the header next to it; returns the header.
    (:func:`write_c_measured` also returns the footprint.)"""
    write_c_measured(spec, out_path, prefix, sparse_style, dtype, scales, example_obs, measure=False)
    return Path(out_path).with_suffix(".h")


def write_c_measured(spec: PolicySpec, out_path: Path, prefix: str = "sparserl", sparse_style: str = "auto",
                     dtype: str = "float32", scales: str = "row", example_obs=None, measure: bool = True) -> dict:
    """Write ``out_path`` (must end in ``.c``) and the header next to it; with ``example_obs`` also
    the test vectors, an example ``main.c`` and a Makefile snippet (:func:`example_files`).
    Returns the footprint of what was written: const table bytes, stack buffers and, with
    ``measure`` and a compiler here, the compiled sizes (:func:`measure_footprint`)."""
    out_path = Path(out_path)
    if out_path.suffix != ".c":
        raise UserError(f"--format c writes a .c file and a .h next to it; --out must end in .c, got {out_path}")
    header_path = out_path.with_suffix(".h")
    source, header, fp = _generate(spec, header_path.name, prefix, sparse_style, dtype, scales)
    header_path.write_text(header)
    out_path.write_text(source)
    if example_obs is not None:
        for name, text in example_files(spec, out_path.name, prefix, dtype, scales, example_obs).items():
            (out_path.parent / name).write_text(text)
    if measure:
        fp.update(measure_footprint(out_path, spec))
    return fp


def example_names(c_name: str) -> list[str]:
    """The files :func:`example_files` writes beside ``policy.c``."""
    stem = Path(c_name).stem
    return [f"{stem}_vectors.h", f"{stem}_main.c", f"{stem}.mk"]


def example_files(spec: PolicySpec, c_name: str, prefix: str, dtype: str, scales: str, obs) -> dict[str, str]:
    """Test vectors (observations, the outputs and actions this export computes for them, and a
    tolerance per vector), a ``main.c`` that checks the compiled policy against them and a
    Makefile snippet that builds and runs it: the way to check a build on the target itself."""
    from .quant import error_bound, int8_outputs

    stem, upper, p = Path(c_name).stem, prefix.upper(), prefix
    vec_name, main_name, mk_name = example_names(c_name)
    obs = np.asarray(obs, np.float32).reshape(-1, spec.obs_dim)
    if dtype == "int8":
        outputs = int8_outputs(spec, obs, scales).astype(np.float64)
        # int8 rounds each layer's input: a 1-ulp difference of the target's tanhf can move one
        # quantized value by one step, so allow a small part of the guaranteed bound on top
        slack = 0.01 * error_bound(spec, obs, scales)[0].max(axis=1)
    else:
        outputs, slack = spec.outputs(obs), np.zeros(len(obs))
    actions = spec.apply_head(outputs)
    tol = 1e-4 * (1.0 + np.abs(outputs).max(axis=1)) + slack
    if spec.head == "argmax":
        top2 = np.sort(outputs, axis=1)[:, -2:] if spec.out_dim > 1 else np.concatenate([outputs, outputs - np.inf], 1)
        check_action = (top2[:, 1] - top2[:, 0] > 2 * tol).astype(int)
        act_rows, act_tol = actions.reshape(-1, 1).astype(np.float32), tol
    else:
        check_action = np.ones(len(obs), int)
        gain = np.abs(spec.action_scale).max() if spec.head == "tanh" else 1.0
        act_rows, act_tol = actions, tol * gain + 1e-6

    def rows(a):
        return ",\n    ".join("{" + ", ".join(c_float(v) for v in row) + "}" for row in np.asarray(a, np.float32))

    n = len(obs)
    vectors = f"""/* Test vectors for {Path(c_name).with_suffix(".h").name}, written by sparserl export: {n} observations and
 * the outputs and actions the exporting Python computed for the {dtype} form written, with a
 * tolerance per vector. Checked by {main_name}. */
#ifndef {upper}_VECTORS_H
#define {upper}_VECTORS_H

#define {upper}_TV_COUNT {n}
static const float {p}_tv_obs[{n}][{upper}_OBS_DIM] = {{
    {rows(obs)}
}};
static const float {p}_tv_outputs[{n}][{upper}_OUT_DIM] = {{
    {rows(outputs)}
}};
static const float {p}_tv_actions[{n}][{upper}_ACT_DIM] = {{
    {rows(act_rows)}
}};
static const float {p}_tv_tol[{n}] = {{{", ".join(c_float(t) for t in tol)}}};
static const float {p}_tv_act_tol[{n}] = {{{", ".join(c_float(t) for t in act_tol)}}};
/* 0 where the expected greedy action is a near tie: only the outputs are compared there */
static const int {p}_tv_check_action[{n}] = {{{", ".join(str(int(c)) for c in check_action)}}};

#endif
"""
    main = f"""/* Checks the compiled policy against its test vectors: prints one line, exits 0 when every
 * output and action is within tolerance. Build and run: make -f {mk_name} {stem}_check
 * (or: cc -std=c99 -O2 {main_name} {c_name} -lm -o {stem}_check && ./{stem}_check). */
#include <stdio.h>
#include "{Path(c_name).with_suffix(".h").name}"
#include "{vec_name}"

static float absdiff(float a, float b) {{ return a > b ? a - b : b - a; }}

int main(void)
{{
    float out[{upper}_OUT_DIM], act[{upper}_ACT_DIM], worst = 0.0f;
    int bad = 0;
    for (int n = 0; n < {upper}_TV_COUNT; ++n) {{
        int ok = 1;
        {p}_outputs({p}_tv_obs[n], out);
        for (int i = 0; i < {upper}_OUT_DIM; ++i) {{
            const float d = absdiff(out[i], {p}_tv_outputs[n][i]);
            if (d > worst) worst = d;
            if (!(d <= {p}_tv_tol[n])) ok = 0;
        }}
        {p}_act({p}_tv_obs[n], act);
        if ({p}_tv_check_action[n])
            for (int i = 0; i < {upper}_ACT_DIM; ++i)
                if (!(absdiff(act[i], {p}_tv_actions[n][i]) <= {p}_tv_act_tol[n])) ok = 0;
        bad += !ok;
    }}
    printf("{p}: %d of %d test vectors within tolerance (largest output difference %g)\\n",
           {upper}_TV_COUNT - bad, {upper}_TV_COUNT, (double)worst);
    return bad != 0;
}}
"""
    mk = f"""# Makefile snippet for the exported policy {c_name}: include it (include {mk_name}) or run
#   make -f {mk_name} {stem}_check
# {stem}_check runs the test vectors ({vec_name}) through the compiled policy.
{upper}_CFLAGS ?= -std=c99 -O2 -Wall
{upper}_OBJ = {Path(c_name).with_suffix(".o").name}

$({upper}_OBJ): {c_name} {Path(c_name).with_suffix(".h").name}
\t$(CC) $({upper}_CFLAGS) -c {c_name} -o $@

{stem}_check: {main_name} {vec_name} $({upper}_OBJ)
\t$(CC) $({upper}_CFLAGS) {main_name} $({upper}_OBJ) -lm -o $@
\t./$@
"""
    return {vec_name: vectors, main_name: main, mk_name: mk}


def measure_footprint(c_path: Path, spec: PolicySpec) -> dict:
    """Flash and RAM of the generated source as this machine's compiler builds it: section
    sizes of the object file (``size -A``) and the stack of one action (``-fstack-usage``,
    summed along the call chain act -> outputs, so an upper bound where the compiler inlined).
    Empty (with the reason) without a compiler or ``size``."""
    import tempfile

    cc, size = find_compiler(), shutil.which("size")
    c_path = Path(c_path).resolve()  # compiled from a temporary working directory
    if cc is None or size is None:
        return {"why_not_measured": "no C compiler" if cc is None else "no size tool"}
    flags = ["-std=c99", "-O2"]
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "policy.o"
        proc = subprocess.run([cc, *flags, "-fstack-usage", "-c", str(c_path), "-o", str(obj)],
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            return {"why_not_measured": f"compiling failed: {(proc.stderr.strip().splitlines() or [''])[0][:120]}"}
        sections = {}
        for line in subprocess.run([size, "-A", str(obj)], capture_output=True, text=True).stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
                sections[parts[0]] = int(parts[1])
        stack = {}
        su = obj.with_suffix(".su")
        if su.exists():
            for line in su.read_text().splitlines():
                fields = line.split("\t")
                if len(fields) >= 2 and fields[1].strip().isdigit():
                    stack[fields[0].rsplit(":", 1)[-1]] = int(fields[1])
    machine = subprocess.run([cc, "-dumpmachine"], capture_output=True, text=True).stdout.strip() or "this host"
    text = sum(v for k, v in sections.items() if k.startswith(".text"))
    rodata = sum(v for k, v in sections.items() if k.startswith(".rodata"))
    data = sum(v for k, v in sections.items() if k.startswith(".data"))
    bss = sum(v for k, v in sections.items() if k.startswith(".bss"))
    p = c_path.read_text().split("const int ", 1)[1].split("_obs_dim", 1)[0]
    chain = [f"{p}_act", f"{p}_outputs"] + ([f"{p}_act_discrete"] if spec.head == "argmax" else [])
    stack_bytes = sum(stack.get(f, 0) for f in chain)
    return {"measured": {"compiler": Path(cc).name, "flags": flags, "machine": machine, "text_bytes": text,
                         "rodata_bytes": rodata, "flash_bytes": text + rodata + data, "static_ram_bytes": data + bss,
                         "stack_bytes": stack_bytes, "ram_bytes": data + bss + stack_bytes}}


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
