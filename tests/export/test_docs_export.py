"""docs/export.md (the export reference the README links to) documents the deployment options
that exist, and states int8's error in the words the export really prints (no number from one
run)."""
from __future__ import annotations

import contextlib
import io
import re

from sparserl.cli import build_parser

from export_helpers import run_main
from test_formats import REPO_ROOT


def export_section() -> str:
    text = (REPO_ROOT / "docs" / "export.md").read_text()
    return text.split("# Export and deploy", 1)[1]


def export_help() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            build_parser().parse_args(["export", "--help"])
        except SystemExit:
            pass
    return out.getvalue()


def test_every_documented_option_exists_and_every_option_is_documented():
    section, help_text = export_section(), export_help()
    for flag in ("--c-style", "--c-prefix", "--c-example", "--dtype", "--int8-scales"):
        assert flag in section and flag in help_text, flag
    for word in ("arrays", "unrolled", "auto", "row", "layer", "SPARSERL_USE_PROGMEM", "policy_vectors.h",
                 "policy_main.c", "policy.mk", "Tanh", "--env"):
        assert word in section, word
    for kw in ("c_style", "c_prefix", "c_example", "dtype", "int8_scales", "probe_obs"):
        assert f"`{kw}`" in section, kw


def test_docs_state_the_int8_error_as_the_export_prints_it(rlx2_run, tmp_path):
    section = " ".join(export_section().split())
    rc, out, err = run_main(["export", str(rlx2_run), "--format", "c", "--dtype", "int8",
                             "--out", str(tmp_path / "q.c")])
    assert rc == 0, err
    line = next(l for l in out.splitlines() if l.startswith("int8"))
    # the printed line carries the two figures the docs promise ...
    assert "largest action difference measured" in line and "guaranteed worst-case bound" in line
    assert "largest action difference measured between the int8 and the float32 policy" in section
    assert "guaranteed worst-case bound" in section
    # ... and the docs promise no particular value: no number next to the int8 claims
    int8_paragraph = section.split("**int8**", 1)[1]
    assert not re.search(r"\d\.\d|\d+ ?%", int8_paragraph)
