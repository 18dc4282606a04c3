"""Deploying the generated C: the style and prefix flags, the printed flash/RAM of the form
written, test vectors checked by the generated main.c (through the Makefile snippet), two
policies in one program, and the PROGMEM macros."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from sparserl.export import export_policy, policy_spec_of
from sparserl.export import c_format
from sparserl.export.c_format import compile_c, find_compiler

from export_helpers import run_main
from test_formats import random_obs

needs_cc = pytest.mark.skipif(find_compiler() is None,
                              reason="no C compiler (cc or $CC) on PATH: the generated C cannot be built here")


def test_cli_c_style_and_prefix_reach_the_written_source(rlx2_run, tmp_path):
    written = {}
    for style in ("arrays", "unrolled"):
        out = tmp_path / style / "pol.c"
        rc, stdout, err = run_main(["export", str(rlx2_run), "--format", "c", "--out", str(out),
                                    "--c-style", style, "--c-prefix", "arm_ctl"])
        assert rc == 0, err
        source, header = out.read_text(), out.with_suffix(".h").read_text()
        assert f"Layers: dense, {style}, dense" in source
        assert ("L1_C[" in source) == (style == "arrays")
        assert "void arm_ctl_act(const float *obs, float *out);" in header and "ARM_CTL_OBS_DIM" in header
        assert "sparserl_" not in source + header
        line = next(l for l in stdout.splitlines() if l.startswith("C form written"))
        assert style in line and "stack" in line
        written[style] = stdout
    # the compact form's tables are larger than the unrolled form's (which keeps weights in code)
    def tables(stdout):
        line = next(l for l in stdout.splitlines() if l.startswith("C form written"))
        return int(line.split("const tables ")[1].split(" bytes")[0].replace(",", ""))
    assert tables(written["arrays"]) > tables(written["unrolled"])


@needs_cc
def test_measured_flash_and_ram_are_those_of_the_form_written(sparse_td3, tmp_path):
    spec = policy_spec_of(sparse_td3)
    fps = {style: export_policy(spec, "c", tmp_path / f"{style}.c", c_style=style).footprint
           for style in ("arrays", "unrolled")}
    for style, fp in fps.items():
        m = fp["measured"]
        assert m["flash_bytes"] >= m["text_bytes"] + m["rodata_bytes"] > 0
        assert m["flash_bytes"] >= fp["tables_bytes"]  # the tables are in the object
        assert m["stack_bytes"] > 0 and fp["buffer_bytes"] > 0  # the activations live on the stack
        assert m["ram_bytes"] == m["static_ram_bytes"] + m["stack_bytes"]
    # unrolled layers hold every weight as an instruction operand: more flash than value + index tables
    assert fps["unrolled"]["measured"]["flash_bytes"] > fps["arrays"]["measured"]["flash_bytes"]


def test_without_a_compiler_the_code_size_is_said_to_be_unmeasured(sparse_td3, tmp_path, monkeypatch):
    monkeypatch.setattr(c_format, "find_compiler", lambda: None)
    report = export_policy(sparse_td3, "c", tmp_path / "p.c")
    assert "measured" not in report.footprint
    from sparserl.export import format_report
    assert "code size not measured (no C compiler)" in format_report(report)


def _make_check(directory, mk_name, target):
    """Build and run the example through the generated Makefile snippet (or its cc line)."""
    if shutil.which("make"):
        return subprocess.run(["make", "-s", "-C", str(directory), "-f", mk_name, target],
                              capture_output=True, text=True)
    stem = mk_name[:-3]
    exe = compile_c([directory / f"{stem}_main.c", directory / f"{stem}.c"], directory / target, shared=False)
    return subprocess.run([str(exe)], capture_output=True, text=True)


@needs_cc
@pytest.mark.parametrize("dtype", ["float32", "int8"])
@pytest.mark.parametrize("agent_name", ["sparse_td3", "structured_dqn"])
def test_test_vectors_round_trip_through_the_generated_main(request, tmp_path, agent_name, dtype):
    agent = request.getfixturevalue(agent_name)
    obs = random_obs(agent, n=32, seed=11)
    export_policy(agent, "c", tmp_path / "pol.c", dtype=dtype, c_example=True, probe_obs=obs, c_prefix="tv")
    assert {p.name for p in tmp_path.iterdir()} >= {"pol.c", "pol.h", "pol_vectors.h", "pol_main.c", "pol.mk"}
    proc = _make_check(tmp_path, "pol.mk", "pol_check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tv: 32 of 32 test vectors within tolerance" in proc.stdout
    # the vectors hold what the Python side computes, and the check really compares: a wrong
    # expected output makes it fail
    vectors = (tmp_path / "pol_vectors.h").read_text()
    head, rest = vectors.split("tv_tv_outputs[32][TV_OUT_DIM] = {\n    {", 1)
    first = re.match(r"[^,}]+", rest).group(0)
    (tmp_path / "pol_vectors.h").write_text(head + "tv_tv_outputs[32][TV_OUT_DIM] = {\n    {"
                                            + c_format.c_float(float(first.rstrip("f")) + 1.0) + rest[len(first):])
    (tmp_path / "pol_check").unlink()
    proc = _make_check(tmp_path, "pol.mk", "pol_check")
    assert proc.returncode != 0 and "31 of 32" in proc.stdout


@needs_cc
def test_cli_c_example_prints_where_the_files_are(rlx2_run, tmp_path):
    rc, stdout, err = run_main(["export", str(rlx2_run), "--format", "c", "--out", str(tmp_path / "p.c"), "--c-example"])
    assert rc == 0, err
    assert "test vectors:" in stdout and "p_main.c" in stdout and "p.mk" in stdout
    proc = _make_check(tmp_path, "p.mk", "p_check")
    assert proc.returncode == 0 and "within tolerance" in proc.stdout, proc.stdout + proc.stderr
    rc, _, err = run_main(["export", str(rlx2_run), "--format", "npz", "--out", str(tmp_path / "p.npz"), "--c-example"])
    assert rc == 2 and "--c-example" in err and "--format c" in err and len(err.strip().splitlines()) == 1


@needs_cc
def test_two_prefixed_policies_link_into_one_program(sparse_td3, structured_td3, tmp_path):
    export_policy(sparse_td3, "c", tmp_path / "left.c", c_prefix="left")
    export_policy(structured_td3, "c", tmp_path / "right.c", c_prefix="right")
    obs = random_obs(sparse_td3, n=1)[0]
    row = ", ".join(f"{v:.9g}f" for v in obs)
    (tmp_path / "main.c").write_text(f"""#include <stdio.h>
#include "left.h"
#include "right.h"
int main(void) {{
    const float obs[LEFT_OBS_DIM] = {{{row}}};
    float a[LEFT_ACT_DIM], b[RIGHT_ACT_DIM];
    left_act(obs, a);
    right_act(obs, b);
    printf("%.6f %.6f\\n", a[0], b[0]);
    return 0;
}}
""")
    exe = compile_c([tmp_path / "main.c", tmp_path / "left.c", tmp_path / "right.c"], tmp_path / "both", shared=False)
    a, b = (float(x) for x in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split())
    assert a == pytest.approx(float(sparse_td3.act(obs)[0]), abs=1e-5)
    assert b == pytest.approx(float(structured_td3.act(obs)[0]), abs=1e-5)
    rc, _, err = run_main(["export", "unused", "--format", "c", "--out", str(tmp_path / "x.c"), "--c-prefix", "9lives"])
    assert rc == 2 and "9lives" in err and "C identifier" in err


PGMSPACE_STUB = """/* stands in for avr-libc's header: tables in their own section, reads counted */
#include <stdint.h>
extern unsigned long stub_pgm_reads;
#define PROGMEM __attribute__((section(".rodata.progmem")))
#define pgm_read_float(p) (stub_pgm_reads++, *(const float *)(p))
#define pgm_read_byte(p) (stub_pgm_reads++, *(const uint8_t *)(p))
#define pgm_read_word(p) (stub_pgm_reads++, *(const uint16_t *)(p))
#define pgm_read_dword(p) (stub_pgm_reads++, *(const uint32_t *)(p))
"""


@needs_cc
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_progmem_build_reads_every_table_through_the_macros(sparse_td3, tmp_path, dtype):
    obs = random_obs(sparse_td3, n=8, seed=2)
    export_policy(sparse_td3, "c", tmp_path / "pol.c", c_style="arrays", dtype=dtype, c_example=True, probe_obs=obs)
    source = (tmp_path / "pol.c").read_text()
    tables = [line for line in source.splitlines() if line.startswith("static const") and "[" in line]
    assert tables and all("SPARSERL_ROM" in line for line in tables)
    (tmp_path / "avr").mkdir()
    (tmp_path / "avr" / "pgmspace.h").write_text(PGMSPACE_STUB)
    main = (tmp_path / "pol_main.c").read_text().replace("int main(void)", "unsigned long stub_pgm_reads;\nint main(void)")
    main = main.replace("return bad != 0;", 'printf("reads %lu\\n", stub_pgm_reads);\n    return bad != 0;')
    (tmp_path / "pol_main.c").write_text(main)
    exe = compile_c([tmp_path / "pol_main.c", tmp_path / "pol.c"], tmp_path / "check", shared=False,
                    extra_flags=("-DSPARSERL_USE_PROGMEM", f"-I{tmp_path}"))
    proc = subprocess.run([str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert "8 of 8 test vectors within tolerance" in proc.stdout
    assert int(proc.stdout.split("reads ")[1]) > 0  # the tables were read through pgm_read_*


@needs_cc
def test_footprint_is_measured_for_a_relative_out_path(sparse_td3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fp = export_policy(sparse_td3, "c", "rel/p.c", c_style="arrays").footprint
    assert "why_not_measured" not in fp and fp["measured"]["flash_bytes"] >= fp["tables_bytes"]
