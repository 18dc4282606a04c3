"""Run-directory safety: one writer per directory, no silent overwrite, no orphan temporaries,
and the state of a run read from its files alone.

**Final-artifact order** (the trainer's contract; :func:`finish_state` relies on it).  At the end
of a run the trainer writes, each file atomically (temporary + rename):

1. ``resume.pt`` at the final step — from here on everything below can be regenerated from it;
2. ``checkpoint.pt``;
3. ``learning_curve.png``;
4. ``summary.json`` — **last**: it is the commit marker, and its ``steps`` equals the final step.

A kill at any instant therefore leaves one of: an earlier ``resume.pt`` (:attr:`RunState.IN_PROGRESS`,
``--resume`` continues), the final ``resume.pt`` without a matching summary
(:attr:`RunState.FINAL_ARTIFACTS_MISSING`, ``--resume`` runs no step and only writes 2-4), or a
:attr:`RunState.COMPLETE` run.  A summary counts only when its ``steps`` equals the step of
``resume.pt``: after ``--resume --steps LARGER`` the old summary of the shorter run stays until
the longer one commits its own.

**Locking** uses ``fcntl.flock`` on ``DIR/.lock`` (POSIX only): the kernel drops the lock when its
holder dies, however it dies, so a stale lock is simply one that can be taken; the pid, host and
start time written into the file only serve the error message of a second writer.
"""
from __future__ import annotations

import enum
import fcntl
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .errors import UserError

# The files of one run, by the name the trainer writes them under.
CONFIG = "config.yaml"
METRICS = "metrics.csv"
RESUME = "resume.pt"
CHECKPOINT = "checkpoint.pt"
PLOT = "learning_curve.png"
SUMMARY = "summary.json"
TENSORBOARD = "tb"
LOCK = ".lock"
RUN_ARTIFACTS = (CONFIG, METRICS, RESUME, CHECKPOINT, PLOT, SUMMARY, TENSORBOARD)
FINAL_ARTIFACTS = (CHECKPOINT, PLOT, SUMMARY)  # in write order; SUMMARY is the commit marker


class RunState(str, enum.Enum):
    EMPTY = "empty"                          # no run files at all
    STARTED = "started"                      # run files, but no resume.pt and no summary: killed
    #                                          before its first checkpoint, nothing to resume
    IN_PROGRESS = "in progress"              # resume.pt before its final step
    FINAL_ARTIFACTS_MISSING = "final artifacts missing"  # resume.pt at its final step, no matching summary
    COMPLETE = "complete"                    # summary.json committed


@dataclass(frozen=True)
class RunStatus:
    """What :func:`finish_state` found; ``step``/``steps`` come from ``resume.pt`` (None without one)."""

    state: RunState
    step: int | None = None
    steps: int | None = None

    @property
    def resumable(self) -> bool:
        """``--resume`` has work to do: steps to run, or final artifacts to write."""
        return self.state in (RunState.IN_PROGRESS, RunState.FINAL_ARTIFACTS_MISSING)

    def describe(self) -> str:
        if self.step is None:
            return self.state.value
        return f"{self.state.value}, resume.pt at step {self.step} of {self.steps}"


# --------------------------------------------------------------------------- the directory

NAME_MAX = 255  # bytes per file or directory name on Linux, macOS and Windows file systems


def _path_text(path: str | os.PathLike | None, what: str) -> str:
    text = "" if path is None else os.fspath(path)
    if not text.strip():
        raise UserError(f"{what} must name a directory, got {text!r}")
    if "\0" in text:
        raise UserError(f"{what} {text!r} contains a NUL character")
    long = next((part for part in Path(text).parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long is not None:  # mkdir would fail with ENAMETOOLONG halfway through creating parents
        raise UserError(f"{what}: the name {long[:40]}... is {len(os.fsencode(long))} bytes long; allowed: at most "
                        f"{NAME_MAX} bytes per directory name")
    return text


def ensure_run_dir(path: str | os.PathLike | None, what: str = "--out") -> Path:
    """Create the directory if needed and prove it writable; one-line errors otherwise.

    Writability is tested by creating a file, not with ``os.access``: permission bits do not
    stop root, while a read-only mount or a path below a regular file stops everyone.
    """
    text = _path_text(path, what)
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UserError(f"{what} {text} is an existing file; give a directory path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write to {what} {text}: {exc.strerror or exc}") from None
    return out


class RunDirLock:
    """Exclusive lock on a run directory (``with RunDirLock(path): ...``).

    A second process (or a second lock in the same process) gets a one-line ``UserError``
    naming the directory and the holder's pid.  A lock file left by a killed process is taken
    over; its former owner is then in :attr:`stale_owner` (for a note to the user).
    """

    def __init__(self, path: str | os.PathLike | None, what: str = "--out"):
        self.what = what
        self.path = Path(_path_text(path, what))
        self.stale_owner: dict | None = None
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        ensure_run_dir(self.path, self.what)
        lock_path = self.path / LOCK
        while True:
            try:
                # O_NOFOLLOW: a crafted run directory's ".lock -> /etc/passwd" must not be truncated.
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                raise UserError(f"cannot create the lock file {lock_path}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise UserError(f"{self.what} {self.path} is in use by {_describe_owner(owner)}; wait for it to "
                                f"finish or choose another directory") from None
            except OSError as exc:
                os.close(fd)
                raise UserError(f"cannot lock {lock_path}: {exc.strerror or exc}") from None
            # The previous holder unlinks the file on release: if that happened between our open
            # and our flock, we hold a lock on a file nobody else will see; start again.
            try:
                current = os.lstat(lock_path)
                mine = os.fstat(fd)
                if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self.stale_owner = _read_owner(fd)  # content left by a holder that died without releasing
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            (self.path / LOCK).unlink(missing_ok=True)  # unlinked while still held: see acquire()
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_owner(fd: int) -> dict | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe_owner(owner: dict | None) -> str:
    if not owner:
        return "another process (pid unknown)"
    where = f" on {owner.get('host')}" if owner.get("host") and owner.get("host") != socket.gethostname() else ""
    since = f" since {owner['started']}" if owner.get("started") else ""
    return f"pid {owner.get('pid')}{where}{since}"


def clean_orphan_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temporaries of interrupted atomic writes (``.NAME.XXXXXXXX.tmp``, ``metrics.csv.tmp``)
    in a run directory; return what was removed.  Call it only while holding :class:`RunDirLock`:
    a live writer's temporary looks exactly like an orphan."""
    from .checkpoint import is_atomic_write_temp  # imports torch, which the lock does not need

    out = Path(path)
    artifact_temps = {f"{name}.tmp" for name in RUN_ARTIFACTS}
    removed = []
    for entry in out.iterdir() if out.is_dir() else ():
        if (is_atomic_write_temp(entry.name) or entry.name in artifact_temps) \
                and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def remove_run_artifacts(path: str | os.PathLike) -> None:
    """What ``--overwrite`` deletes: the run's own files (:data:`RUN_ARTIFACTS`) and orphan
    temporaries.  Anything else in the directory (a user's notes, a bench cell's logs) stays, so
    ``--out ~ --overwrite`` cannot wipe a home directory."""
    out = Path(path)
    for name in RUN_ARTIFACTS:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    clean_orphan_temps(out)


# --------------------------------------------------------------------------- run state

def read_resume_progress(path: str | os.PathLike) -> tuple[int, int]:
    """``(step, steps)`` of a ``resume.pt``, read without loading its tensors (memory-mapped)."""
    from .checkpoint import load  # imports torch; the lock and the bench harness do not need it

    state = load(path, mmap=True)
    try:
        step, steps = state["step"], state["config"]["steps"]
    except (KeyError, TypeError):
        step = steps = None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (step, steps)):
        raise UserError(f"{path} is not a sparserl resume file (no integer 'step' and 'config.steps')")
    # a hand-edited counter (step: -50) would replay or double-count steps on resume
    if steps < 1 or not 0 <= step <= steps:
        raise UserError(f"{path}: stored step {step} of {steps} is out of range; allowed: "
                        f"0 <= step <= config.steps, config.steps >= 1 (the file was edited or damaged)")
    return step, steps


def read_summary(path: str | os.PathLike) -> dict | None:
    """A run's summary.json as a dict, or None if missing or not valid JSON (never committed)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def finish_state(path: str | os.PathLike) -> RunStatus:
    """The state of the run in ``path``, from its files (see the module docstring for the order
    that makes this exact).  Raises ``UserError`` if ``resume.pt`` exists but cannot be read."""
    out = Path(path)
    summary = read_summary(out / SUMMARY)
    if not (out / RESUME).is_file():
        if summary is not None:
            return RunStatus(RunState.COMPLETE)
        started = any((out / name).exists() for name in RUN_ARTIFACTS)
        return RunStatus(RunState.STARTED if started else RunState.EMPTY)
    step, steps = read_resume_progress(out / RESUME)
    if step < steps:
        state = RunState.IN_PROGRESS
    elif summary is not None and summary.get("steps") == step and (out / CHECKPOINT).is_file():
        state = RunState.COMPLETE
    else:
        state = RunState.FINAL_ARTIFACTS_MISSING
    return RunStatus(state, step, steps)


def check_out_dir(path: str | os.PathLike | None, overwrite: bool = False, resuming: bool = False) -> RunStatus:
    """Validate a run directory for writing and return its state; one-line errors.

    Fresh runs (``resuming=False``): the directory is created; a complete or resumable run in it
    is refused unless ``overwrite``, which then deletes the run's files
    (:func:`remove_run_artifacts`); the files of a run killed before its first checkpoint
    (``STARTED``) are deleted without asking, as they hold nothing to resume.  ``resuming=True``: the directory must exist
    and hold ``resume.pt``; the caller decides from the returned state and the requested steps.
    A run file that is a symbolic link is refused in both cases (a crafted directory could aim
    ``config.yaml`` at a file elsewhere).  Call it while holding :class:`RunDirLock` so the state
    cannot change underneath.
    """
    what = "--resume" if resuming else "--out"
    if overwrite and resuming:
        raise UserError("--overwrite cannot be combined with --resume (resume continues the run in place)")
    text = _path_text(path, what)
    if resuming and not Path(text).is_dir():
        raise UserError(f"--resume {text}: no such run directory")
    out = ensure_run_dir(text, what)
    links = [name for name in RUN_ARTIFACTS if (out / name).is_symlink()]
    if links:  # writing through one (config.yaml -> ~/.bashrc) would change a file outside the run
        raise UserError(f"{what} {text}: {links[0]} is a symbolic link; run files must be regular files "
                        f"(remove the link)")
    try:
        status = finish_state(out)
    except UserError as exc:  # an unreadable or damaged resume.pt
        if overwrite:
            status = RunStatus(RunState.STARTED)  # nothing in it can be resumed: replaced below
        elif resuming:
            raise UserError(f"{exc}; it cannot be resumed (a fresh run with --overwrite replaces it)") from None
        else:
            raise UserError(f"{exc}; pass --overwrite to replace the run or choose another --out") from None
    if resuming:
        if status.step is None:
            raise UserError(f"--resume {text}: no {RESUME} there, nothing to resume ({status.describe()})")
        return status
    if status.state is RunState.COMPLETE and not overwrite:
        raise UserError(f"--out {text} holds a finished run ({SUMMARY}); pass --overwrite to replace it "
                        f"or choose another --out")
    if status.resumable and not overwrite:
        raise UserError(f"--out {text} holds an unfinished run ({status.describe()}); continue it with "
                        f"`sparserl train --resume {text}` or pass --overwrite to start afresh")
    if status.state is RunState.STARTED or (overwrite and status.state is not RunState.EMPTY):
        remove_run_artifacts(out)  # STARTED: stale logs of a dead run would mix with the new ones
    return status


@contextmanager
def open_run_dir(path: str | os.PathLike | None, overwrite: bool = False,
                 resuming: bool = False) -> Iterator[RunStatus]:
    """Everything a run does before its first write, in the one safe order: lock the directory,
    check it (:func:`check_out_dir`), delete orphan temporaries; the lock is held until exit.

    ``--resume`` of a missing directory fails before the lock would create it."""
    what = "--resume" if resuming else "--out"
    if resuming and not Path(_path_text(path, what)).is_dir():
        raise UserError(f"--resume {os.fspath(path)}: no such run directory")
    with RunDirLock(path, what):
        status = check_out_dir(path, overwrite=overwrite, resuming=resuming)
        clean_orphan_temps(path)
        yield status
