"""Shared by the export tests (imported by module name, like tests/algos/algo_helpers.py)."""
from __future__ import annotations

import contextlib
import io

from sparserl.cli import main


def run_main(argv):
    """``sparserl`` main() with stdout/stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()
