"""Run every cell of a suite as its own process, locally or on Ray; resumable; crash-tolerant.

* A cell is done when its ``summary.json`` exists and parses; done cells are skipped, so a
  killed ``sparserl bench`` resumes by running the same command again.  A cell that is not done
  but resumable (:func:`sparserl.rundir.finish_state`: a ``resume.pt`` before its final step, or
  at it with the final artifacts missing) is continued with ``--resume``; any other unfinished
  cell directory (killed before its first checkpoint, crashed, unreadable ``resume.pt``) is
  wiped and the cell restarts, so no cell fails forever on a state it left behind.
* ``OUT`` is locked (:class:`sparserl.rundir.RunDirLock`) while the grid runs: a second
  ``sparserl bench`` on the same directory stops with a one-line error instead of wiping the
  first one's running cells.
* Each cell is one process with one torch thread (``OMP_NUM_THREADS=MKL_NUM_THREADS=1``);
  ``workers`` processes run at once.  stdout/stderr go to ``stdout.log``/``stderr.log`` in the
  cell directory.
* A cell that exits non-zero, times out, or exits without a ``summary.json`` never stops the
  grid: its exit code and the tail of its stderr go to ``CELL/error.txt`` and
  ``OUT/failures.json`` (rewritten after every failure and at the end; it lists exactly the cells
  of the suite that are not done).
* ``OUT/manifest.json`` records the suite, the command, dates and the machine;
  ``OUT/suite.yaml`` is a copy of the suite.  Reports and docs/RESULTS.md are built from them.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from sparserl.atomic import atomic_write_text
from sparserl.errors import UserError
from sparserl.rundir import RunDirLock, RunState, finish_state

from .suite import Cell, Suite, default_command, default_resume_command, load_suite

BACKENDS = ("local", "ray")
STDERR_TAIL_LINES = 40
CommandBuilder = Callable[[Cell], Sequence[str]]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


# --------------------------------------------------------------------------- one cell

def is_done(cell_dir: str | Path) -> bool:
    """A cell is done when its run is finished by the one rule of a finished run,
    :func:`sparserl.rundir.finish_state` (``COMPLETE``: a valid summary.json that is the run's
    last word -- not one left from before a ``--resume`` with more steps).  A cell whose
    ``resume.pt`` cannot be read is not done: it restarts (:func:`is_resumable`)."""
    try:
        return finish_state(cell_dir).state is RunState.COMPLETE
    except UserError:
        return False


def is_resumable(cell_dir: str | Path) -> bool:
    """Whether ``sparserl train --resume`` can finish the cell (steps left, or only its final
    artifacts).  An unreadable ``resume.pt`` is not resumable: the cell restarts rather than
    failing on it at every attempt."""
    if not (Path(cell_dir) / "resume.pt").is_file():
        return False
    try:
        return finish_state(cell_dir).resumable
    except UserError:
        return False


def child_env(base: dict | None = None) -> dict:
    """Environment of a cell process: one BLAS/torch thread; this sparserl importable."""
    env = dict(os.environ if base is None else base)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _PACKAGE_ROOT not in paths:
        env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT, *paths])
    return env


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16_384))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _run_process(command: Sequence[str], log_dir: Path, append: bool, timeout: float | None,
                 procs: set | None, log_name: str = "") -> tuple[int, float, bool]:
    """Run one process with its stdout/stderr in ``log_dir`` (``{log_name}stdout.log``...);
    returns (exit code, wall seconds, timed out)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    timed_out = False
    mode = "ab" if append else "wb"
    with open(log_dir / f"{log_name}stdout.log", mode) as out, open(log_dir / f"{log_name}stderr.log", mode) as err:
        try:
            proc = subprocess.Popen(list(command), stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=child_env())
        except OSError as exc:
            err.write(f"cannot start cell process: {exc}\n".encode())
            proc = None
        if proc is not None:
            if procs is not None:
                procs.add(proc)
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                proc.kill()
                returncode = proc.wait()
            finally:
                if procs is not None:
                    procs.discard(proc)
        else:
            returncode = 127
    return returncode, time.time() - t0, timed_out


def _outcome(cdir: Path, command: Sequence[str], returncode: int, wall: float, timed_out: bool,
             timeout: float | None, resumed: bool, stderr_path: Path) -> dict:
    """A cell's result dict; a cell that did not finish gets its ``error.txt``."""
    ok = returncode == 0 and is_done(cdir)
    result = {"ok": ok, "returncode": returncode, "wall_s": round(wall, 3), "stderr_tail": "",
              "resumed": resumed}
    if not ok:
        tail = _tail(stderr_path)
        if timed_out:
            reason = f"killed after the cell timeout of {timeout:g} s"
        elif returncode == 0:
            reason = ("exited with code 0 but did not finish its run (no valid summary.json, or one "
                      "older than its resume.pt)")
        else:
            reason = f"exited with code {returncode}"
        result.update(stderr_tail=tail, reason=reason)
        cdir.mkdir(parents=True, exist_ok=True)
        (cdir / "error.txt").write_text(
            f"{reason}\ncommand: {' '.join(map(str, command))}\nexit code: {returncode}\n"
            f"wall time: {wall:.1f} s\n--- last {STDERR_TAIL_LINES} lines of stderr ---\n{tail}\n"
        )
    return result


def execute_cell(command: Sequence[str], cell_dir: str, timeout: float | None = None,
                 procs: set | None = None, resume_command: Sequence[str] | None = None) -> dict:
    """Run one cell process to completion and record its outcome in ``cell_dir``.

    If ``resume_command`` is given and the cell directory is resumable (:func:`is_resumable`),
    that command continues it; otherwise leftovers of an earlier attempt are deleted and
    ``command`` starts afresh.  Returns ``{"ok", "returncode", "stderr_tail",
    "wall_s", "resumed"}``.  Used by both backends (on Ray it runs inside the task).
    """
    cdir = Path(cell_dir)
    resumed = bool(resume_command) and is_resumable(cdir)
    if resumed:
        command = list(resume_command)
        (cdir / "error.txt").unlink(missing_ok=True)
    elif cdir.exists():  # leftovers of a killed or failed attempt
        shutil.rmtree(cdir)
    returncode, wall, timed_out = _run_process(command, cdir, resumed, timeout, procs)
    return _outcome(cdir, command, returncode, wall, timed_out, timeout, resumed, cdir / "stderr.log")


def execute_group(command: Sequence[str], cell_dirs: Sequence[str], timeout: float | None = None,
                  procs: set | None = None, resumed: bool = False) -> list[dict]:
    """Run one ``sparserl train --seeds`` process for several cells (see :func:`group_jobs`).

    Its logs are ``seeds-A,B.stdout.log`` / ``.stderr.log`` in the cells' common parent
    directory; each cell gets its own result (and ``error.txt`` if it did not finish)."""
    dirs = [Path(d) for d in cell_dirs]
    for cdir in dirs:
        if resumed:
            (cdir / "error.txt").unlink(missing_ok=True)
        elif cdir.exists():
            shutil.rmtree(cdir)
    parent = dirs[0].parent
    name = "seeds-" + ",".join(d.name[len("seed"):] for d in dirs) + "."
    returncode, wall, timed_out = _run_process(command, parent, resumed, timeout, procs, log_name=name)
    return [_outcome(cdir, command, returncode, wall, timed_out, timeout, resumed, parent / f"{name}stderr.log")
            for cdir in dirs]


def group_jobs(todo: "Todo") -> list:
    """The cells still to run as jobs: a cell alone ``(cell, command, resume)``, or, for cells
    of one configuration with ``vectorise`` > 1, groups of up to ``vectorise`` seeds
    ``([cells], command, resumed)`` -- the resumable ones and the fresh ones apart (a group
    steps its members in lockstep, so they start from one step)."""
    from .suite import group_command  # noqa: PLC0415
    jobs: list = []
    by_config: dict = {}
    for item in todo:
        cell = item[0]
        if cell.vectorise <= 1:
            jobs.append(item)
            continue
        resumable = is_resumable(cell.out_dir)
        by_config.setdefault((cell.out_dir.parent, resumable), []).append(cell)
    for (_, resumable), cells in by_config.items():
        size = cells[0].vectorise
        for i in range(0, len(cells), size):
            chunk = cells[i:i + size]
            jobs.append((chunk, [str(a) for a in group_command(chunk, resume=resumable)], resumable))
    return jobs


# --------------------------------------------------------------------------- bookkeeping

def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    try:  # torch is a dependency of sparserl, but the harness itself does not need it
        import torch  # noqa: PLC0415

        info["torch"] = torch.__version__
    except Exception:  # pragma: no cover - torch missing or broken
        pass
    return info


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _cell_record(cell: Cell, run_dir: Path) -> dict:
    return {"cell": cell.key, "algo": cell.algo, "env": cell.env, "method": cell.method,
            "label": cell.label, "seed": cell.seed, "dir": str(cell.out_dir.relative_to(run_dir))}


def _failures(suite: Suite, run_dir: Path, results: dict[str, dict]) -> list[dict]:
    """Every cell of the suite that is not done, with its recorded error."""
    out = []
    for cell in suite.cells:
        if is_done(cell.out_dir):
            continue
        rec = _cell_record(cell, run_dir)
        res = results.get(cell.key)
        if res is not None:
            rec.update(returncode=res.get("returncode"), reason=res.get("reason", ""),
                       stderr_tail=res.get("stderr_tail", ""))
        else:
            err = cell.out_dir / "error.txt"
            rec.update(returncode=None, reason="not run yet" if not err.exists() else "see error.txt",
                       stderr_tail=err.read_text()[-4000:] if err.exists() else "")
        out.append(rec)
    return out


# --------------------------------------------------------------------------- backends

def _progress(total: int, initial: int, desc: str):
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, initial=initial, desc=desc, unit="cell", dynamic_ncols=True,
                smoothing=0.0, file=sys.stderr)


Todo = list[tuple[Cell, list[str], "list[str] | None"]]


def _run_local(todo: Todo, workers: int, on_result) -> None:
    procs: set = set()
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {}
        queue = list(todo)
        try:
            while queue or pending:
                while queue and len(pending) < workers and not stop.is_set():
                    cell, cmd, resume = queue.pop(0)
                    if isinstance(cell, list):  # a vectorised group of seeds (group_jobs)
                        fut = pool.submit(execute_group, cmd, [str(c.out_dir) for c in cell], cell[0].timeout,
                                          procs, resume)
                    else:
                        fut = pool.submit(execute_cell, cmd, str(cell.out_dir), cell.timeout, procs, resume)
                    pending[fut] = cell
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    cell = pending.pop(fut)
                    if isinstance(cell, list):
                        for member, result in zip(cell, fut.result()):
                            on_result(member, result)
                    else:
                        on_result(cell, fut.result())
        except BaseException:
            stop.set()
            for proc in list(procs):  # do not leave orphans behind on Ctrl-C / SIGTERM
                try:
                    proc.kill()
                except OSError:
                    pass
            raise


def _import_ray():
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        raise UserError("the Ray backend needs Ray: pip install 'sparserl[ray]' "
                        "(or pip install ray)") from None
    return ray


def _run_ray(todo: Todo, workers: int | None, ray_address: str | None,
             on_result) -> dict:
    """Submit cells as Ray tasks (1 CPU each); at most ``workers`` in flight if given.

    With ``ray_address`` the cells run on that cluster: the run directory must be on a file
    system shared by all nodes at the same path, and sparserl (same Python path) installed on
    every node.  Without it a local Ray instance with ``workers`` CPUs is started and stopped.
    """
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                      configure_logging=False)
        if ray_address:
            kwargs["address"] = ray_address
        else:
            kwargs.update(num_cpus=workers or os.cpu_count() or 1,
                          object_store_memory=100 * 1024 * 1024)
        env_vars = {"PYTHONPATH": child_env()["PYTHONPATH"]}
        kwargs["runtime_env"] = {"env_vars": env_vars}
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {ray_address}" if ray_address else "locally"
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot start/connect to Ray {where}: {msg}") from None
        started = True
    info = {"ray_address": ray_address or "local",
            "ray_resources": {k: v for k, v in ray.cluster_resources().items()
                              if k in ("CPU", "GPU", "memory")},
            "ray_nodes": len([n for n in ray.nodes() if n.get("Alive")])}
    task = ray.remote(num_cpus=1, max_retries=0)(execute_cell)
    limit = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    queue = list(todo)
    pending: dict = {}
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                cell, cmd, resume = queue.pop(0)
                pending[task.remote(cmd, str(cell.out_dir), cell.timeout, None, resume)] = cell
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cell = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the task itself died (node lost, worker killed)
                    result = {"ok": False, "returncode": None, "reason": f"Ray task failed: "
                              f"{type(exc).__name__}", "stderr_tail": str(exc)[-2000:]}
                    try:
                        cell.out_dir.mkdir(parents=True, exist_ok=True)
                        (cell.out_dir / "error.txt").write_text(
                            f"{result['reason']}\n{result['stderr_tail']}\n")
                    except OSError:
                        pass
                on_result(cell, result)
    except BaseException:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        raise
    finally:
        if started:
            ray.shutdown()
    return info


# --------------------------------------------------------------------------- entry point

def run_suite(suite_path: str | Path, out_dir: str | Path, workers: int | None = None,
              backend: str = "local", ray_address: str | None = None,
              command_builder: CommandBuilder | None = None, progress: bool = True,
              command_line: str | None = None,
              resume_builder: CommandBuilder | None = None, trust_env_module: bool = False) -> dict:
    """Run every cell of a suite that is not done yet; return a summary dict.

    Args:
        suite_path: the suite YAML file.
        out_dir: the run directory (created; re-use it to resume).
        workers: cells at once (default: CPU count; Ray default: the cluster's CPUs).
        backend: ``"local"`` (processes on this machine) or ``"ray"``.
        ray_address: address of a running Ray cluster (Ray backend only; default local).
        command_builder: ``Cell -> argv``; default :func:`sparserl.bench.suite.default_command`.
        resume_builder: ``Cell -> argv`` continuing a cell whose directory has ``resume.pt``;
            default :func:`~sparserl.bench.suite.default_resume_command` when
            ``command_builder`` is not given, else none (interrupted cells restart afresh).
        progress: show a tqdm progress bar with ETA on stderr.
        command_line: how the run was invoked, recorded in the manifest.
        trust_env_module: allow the suite's ``module:Class`` env ids (their modules run code);
            refused otherwise, since a suite is data.

    Returns ``{"out_dir", "total", "skipped", "ran", "completed", "failed", "failures",
    "elapsed_s"}`` where ``failures`` is the content of ``OUT/failures.json``.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise UserError(f"--workers must be >= 1, got {workers}")
    if ray_address and backend != "ray":
        raise UserError("--ray-address needs --backend ray")
    if backend == "ray":
        _import_ray()  # fail fast, before anything is written
    run_dir = Path(out_dir).resolve()
    suite = load_suite(suite_path, run_dir, trust_env_module=trust_env_module)
    if backend == "ray" and any(c.vectorise > 1 for c in suite.cells):
        raise UserError(f"{suite_path}: 'vectorise' groups seeds on the local backend only; allowed with "
                        f"--backend ray: vectorise 1")
    build = command_builder or default_command
    resume_build = resume_builder or (default_resume_command if command_builder is None else None)
    with RunDirLock(run_dir, "--out"):  # creates OUT; a second bench on it fails here
        prev_suite = run_dir / "suite.yaml"
        new_text = Path(suite_path).read_text()
        if prev_suite.exists() and prev_suite.read_text() != new_text:
            # Resuming with an edited suite is allowed (done cells are kept); keep the old copy.
            shutil.copyfile(prev_suite, run_dir / f"suite.{int(time.time())}.yaml")
        prev_suite.write_text(new_text)

        done = [c for c in suite.cells if is_done(c.out_dir)]
        todo = [(c, list(map(str, build(c))),
                 list(map(str, resume_build(c))) if resume_build else None)
                for c in suite.cells if not is_done(c.out_dir)]
        n_workers = int(workers) if workers else (None if backend == "ray" else (os.cpu_count() or 1))

        manifest_path = run_dir / "manifest.json"
        manifest = {}
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text())
            except ValueError:
                manifest = {}
        started_at = _now()
        manifest.update({
            "suite": suite.name,
            "suite_file": str(Path(suite_path).resolve()),
            "command": command_line or f"run_suite({str(suite_path)!r}, {str(out_dir)!r}, "
                                       f"workers={workers}, backend={backend!r})",
            "backend": backend,
            "workers": n_workers,
            "machine": machine_info(),
            "budgets": {"steps": sorted({c.steps for c in suite.cells}),
                        "eval_every": sorted({c.eval_every for c in suite.cells}),
                        "eval_episodes": sorted({c.eval_episodes for c in suite.cells})},
            "seeds": sorted({c.seed for c in suite.cells}),
            "score_floor": suite.score_floor,
            "cells": [_cell_record(c, run_dir) for c in suite.cells],
            "example_command": list(map(str, build(suite.cells[0]))),
            "started_at": manifest.get("started_at", started_at),
            "last_started_at": started_at,
            "finished_at": None,
        })
        manifest.setdefault("sessions", []).append(
            {"started_at": started_at, "backend": backend, "workers": n_workers,
             "skipped": len(done), "to_run": len(todo)})
        _write_json(manifest_path, manifest)

        results: dict[str, dict] = {}
        lock = threading.Lock()
        t0 = time.time()
        bar = _progress(len(suite.cells), len(done), f"bench {suite.name}") if progress else None
        counts = {"ok": 0, "failed": 0}

        def on_result(cell: Cell, result: dict) -> None:
            with lock:
                results[cell.key] = result
                counts["ok" if result.get("ok") else "failed"] += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(failed=counts["failed"], refresh=False)
                if not result.get("ok"):
                    msg = (f"cell {cell.key} failed ({result.get('reason', '')}); "
                           f"see {cell.out_dir / 'error.txt'}")
                    (bar.write if bar is not None else print)(msg, file=sys.stderr)
                    _write_json(run_dir / "failures.json", _failures(suite, run_dir, results))

        # Turn SIGTERM into an exception so running cells are killed rather than orphaned.
        old_handler = None
        if threading.current_thread() is threading.main_thread():
            def _sigterm(signum, frame):
                raise KeyboardInterrupt(f"signal {signum}")
            old_handler = signal.signal(signal.SIGTERM, _sigterm)
        extra: dict = {}
        try:
            if todo:
                if backend == "ray":
                    extra = _run_ray(todo, n_workers, ray_address, on_result)
                else:
                    # a custom command builder maps single cells only: its cells are not grouped
                    _run_local(group_jobs(todo) if command_builder is None else todo, n_workers, on_result)
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
            if bar is not None:
                bar.close()
            failures = _failures(suite, run_dir, results)
            _write_json(run_dir / "failures.json", failures)

        manifest.update(extra)
        manifest["finished_at"] = _now()
        manifest["sessions"][-1].update(finished_at=manifest["finished_at"],
                                        completed=counts["ok"], failed=counts["failed"],
                                        elapsed_s=round(time.time() - t0, 1))
        _write_json(manifest_path, manifest)
        return {
            "out_dir": str(run_dir),
            "total": len(suite.cells),
            "skipped": len(done),
            "ran": len(results),
            "completed": counts["ok"],
            "failed": len(failures),
            "failures": failures,
            "elapsed_s": round(time.time() - t0, 2),
        }


def dump_suite_cells(suite_path: str | Path, out_dir: str | Path,
                     command_builder: CommandBuilder | None = None, trust_env_module: bool = False) -> list[dict]:
    """The expanded grid with each cell's command and status (for ``--dry-run``)."""
    suite = load_suite(suite_path, Path(out_dir).resolve(), trust_env_module=trust_env_module)
    build = command_builder or default_command
    return [{"cell": c.key, "done": is_done(c.out_dir), "command": list(map(str, build(c)))}
            for c in suite.cells]


__all__ = ["run_suite", "execute_cell", "execute_group", "group_jobs", "is_done", "child_env", "machine_info",
           "dump_suite_cells", "BACKENDS"]
