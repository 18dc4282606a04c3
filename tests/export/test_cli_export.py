"""`sparserl export`, `sparserl eval --exported` and the size section of `sparserl flops`."""
from __future__ import annotations

import re

import pytest

from sparserl.export.c_format import find_compiler

from export_helpers import run_main


def eval_return(stdout: str) -> float:
    return float(re.search(r"return (-?[\d.]+) ±", stdout).group(1))


@pytest.mark.parametrize("fmt,name", [("npz", "p.npz"), ("c", "p.c"), ("torch", "p.pt2"), ("onnx", "p.onnx")])
def test_export_writes_each_format_and_reports_sizes(rlx2_run, tmp_path, fmt, name):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    out = tmp_path / "sub" / name  # missing parent folders are created
    rc, stdout, stderr = run_main(["export", str(rlx2_run), "--format", fmt, "--out", str(out)])
    assert rc == 0, stderr
    assert out.exists()
    if fmt == "c":
        assert out.with_suffix(".h").exists()
    assert "stored" in stdout and "csr" in stdout and "x dense fp32" in stdout


@pytest.mark.parametrize("fmt", ["npz", "c"])
def test_eval_exported_matches_eval_of_the_checkpoint(rlx2_run, tmp_path, fmt):
    if fmt == "c" and find_compiler() is None:
        pytest.skip("no C compiler (cc or $CC) on PATH: the generated C cannot be built here")
    path = tmp_path / f"policy.{fmt}"
    assert run_main(["export", str(rlx2_run), "--format", fmt, "--out", str(path)])[0] == 0
    rc, torch_out, err = run_main(["eval", str(rlx2_run), "--episodes", "2", "--seed", "7"])
    assert rc == 0, err
    rc, exported_out, err = run_main(["eval", str(rlx2_run), "--episodes", "2", "--seed", "7", "--exported", str(path)])
    assert rc == 0, err
    assert eval_return(exported_out) == pytest.approx(eval_return(torch_out), abs=0.011)  # printed to 2 decimals


def test_eval_exported_accepts_a_compiled_library(rlx2_run, tmp_path):
    if find_compiler() is None:
        pytest.skip("no C compiler (cc or $CC) on PATH: the generated C cannot be built here")
    from sparserl.export.c_format import compile_c
    assert run_main(["export", str(rlx2_run), "--format", "c", "--out", str(tmp_path / "lib.c")])[0] == 0
    lib = compile_c([tmp_path / "lib.c"], tmp_path / "lib.so")
    rc, stdout, err = run_main(["eval", str(rlx2_run), "--episodes", "1", "--exported", str(lib)])
    assert rc == 0, err
    assert "exported" in stdout and "return" in stdout


def test_flops_has_the_deployed_size_section(rlx2_run):
    rc, stdout, stderr = run_main(["flops", str(rlx2_run)])
    assert rc == 0, stderr
    section = stdout.split("== deployed policy")[1]
    assert "stored" in section and "bytes" in section and "x the dense fp32 model of the configured widths" in section


def _one_line_error(rc, stdout, stderr, *needles):
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0]


def test_bad_input_exits_2_with_one_line(rlx2_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(*run_main(["export", str(empty), "--format", "npz", "--out", str(tmp_path / "p.npz")]),
                    "checkpoint not found")
    _one_line_error(*run_main(["export", str(rlx2_run), "--format", "tflite", "--out", str(tmp_path / "p")]),
                    "tflite", "npz")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _one_line_error(*run_main(["export", str(rlx2_run), "--format", "npz", "--out", str(blocker / "p.npz")]),
                    "cannot write", "a-file")
    _one_line_error(*run_main(["export", str(rlx2_run), "--format", "npz", "--out", str(tmp_path)]),
                    "is a directory")
    _one_line_error(*run_main(["export", str(rlx2_run), "--format", "c", "--out", str(tmp_path / "p.txt")]),
                    ".c")
    _one_line_error(*run_main(["eval", str(rlx2_run), "--exported", str(tmp_path / "missing.npz")]),
                    "no such file")
    _one_line_error(*run_main(["eval", str(rlx2_run), "--exported", str(blocker)]), "expected a .npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    _one_line_error(*run_main(["eval", str(rlx2_run), "--exported", str(tmp_path / "junk.npz")]), "cannot load")
    assert run_main(["export", str(rlx2_run), "--format", "npz", "--out", str(tmp_path / "cut.npz")])[0] == 0
    data = (tmp_path / "cut.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])  # a truncated download
    _one_line_error(*run_main(["eval", str(rlx2_run), "--exported", str(tmp_path / "cut.npz")]), "cannot load")


def _files(root):
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}


def test_export_never_writes_over_run_files_and_needs_overwrite_for_others(rlx2_run, tmp_path, monkeypatch):
    """`--out RUN/checkpoint.pt` would destroy the run: refused for every run file even with
    --overwrite; another existing file needs --overwrite; writes are atomic (a failing writer
    leaves the previous file intact and no temporary behind)."""
    run_before = _files(rlx2_run)
    for name in ("checkpoint.pt", "resume.pt", "config.yaml", "summary.json", "metrics.csv"):
        for extra in ([], ["--overwrite"]):
            _one_line_error(*run_main(["export", str(rlx2_run), "--format", "npz", "--out", str(rlx2_run / name),
                                       *extra]), name, "run file")
    assert _files(rlx2_run) == run_before
    out = tmp_path / "p.npz"
    out.write_bytes(b"someone else's file")
    _one_line_error(*run_main(["export", str(rlx2_run), "--format", "npz", "--out", str(out)]), "exists", "--overwrite")
    assert out.read_bytes() == b"someone else's file"
    (tmp_path / "p.h").write_text("/* a header of mine */")
    _one_line_error(*run_main(["export", str(rlx2_run), "--format", "c", "--out", str(tmp_path / "p.c")]),
                    "p.h", "exists")
    assert not (tmp_path / "p.c").exists()

    import sparserl.export.npz as npz_module

    def broken(spec, path, *args, **kwargs):
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(npz_module, "write_npz", broken)
    _one_line_error(*run_main(["export", str(rlx2_run), "--format", "npz", "--out", str(out), "--overwrite"]),
                    "No space left")
    assert out.read_bytes() == b"someone else's file"
    monkeypatch.undo()
    assert run_main(["export", str(rlx2_run), "--format", "npz", "--out", str(out), "--overwrite"])[0] == 0
    assert out.read_bytes()[:2] == b"PK"  # the npz replaced it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h", "p.npz"]  # no temporaries left
