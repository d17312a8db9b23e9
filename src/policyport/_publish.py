"""Writing artifacts so a reader never sees half of one, nor half of a set.

Everything is built in one staging folder beside the destinations (same filesystem, so a
rename is atomic) and moved into place only when every artifact of the export is complete
and checked. Publishing several paths is a small transaction:

1. the plan (which staged path goes where) is written, then renamed to `publish-plan.json`
   inside the staging folder: that rename is the commit point;
2. the moves run in the plan's order; each move is idempotent (a moved source is gone);
3. the plan is deleted, then the staging folder.

A staging folder left by a dead export is recovered by the next export or check in that
folder (`_stale` says how a dead export is told from a live one, of this machine or of
another sharing the folder): without a plan it is deleted (the previous set stays,
untouched); with a plan, the remaining moves are finished first (the new set completes).
So after a failure or a kill at any point, once recovered, the destinations hold the
complete previous set or the complete new set. Publishing and recovery hold an exclusive
lock on the folder, so two exports to one place publish one after the other, never
interleaved.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ._errors import InputError, OutputWriteError
from ._pause import test_pause

_MARK = ".policyport-staging-"
PLAN = "publish-plan.json"
# Staging folders this process made and has not removed yet: a folder carrying our host
# and PID that is not in here was left by an earlier process that had the same PID.
_OURS: set[Path] = set()
# A staging folder made on another machine (Dask workers sharing one output folder) cannot
# be judged by its PID, which names a process of that machine. It is taken as dead once
# its folder has not changed for this long: an export stages for minutes (bench/SWEEP.md),
# so a day leaves a wide margin for slow exports and for clocks that disagree.
FOREIGN_STALE_SECONDS = 24 * 60 * 60
# Host names as they go into a file name: anything but these characters becomes "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_HOST_CHARS = 64  # Linux's HOST_NAME_MAX: a longer name (elsewhere) is cut there
# Errors of the disk rather than of policyport: reported as such, with what to do.
_DISK_ERRORS = {errno.ENOSPC: "the disk is full", errno.EFBIG: "a file-size limit was hit"}
_DISK_ERRORS[errno.EDQUOT] = "the disk quota is exhausted"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def folder_lock(directory: Path) -> Iterator[None]:
    """An exclusive `flock` on `directory` itself (no lock file is left behind).

    A second export waits here until the first has published (or failed).
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock; so does the process dying


def host_name() -> str:
    """This machine's name as it goes into a staging folder's name (safe in a file name)."""
    return _UNSAFE.sub("_", socket.gethostname())[:_HOST_CHARS] or "unknown"


def _owner(entry: Path) -> tuple[str | None, int] | None:
    """The host and PID in a staging folder's name (`<host>-<pid>-<random>`), or None.

    The host is None for a name without one (`<pid>-<random>`, written before hosts were
    recorded): its machine is unknown, so it is judged as another machine's.
    """
    # The random suffix (tempfile's) holds no "-"; the host may.
    parts = entry.name.split(_MARK, 1)[1].rsplit("-", 2)
    if len(parts) < 2 or not parts[-2].isdigit() or parts[0] == "":
        return None
    return (parts[0] if len(parts) == 3 else None), int(parts[-2])


def _stale(directory: Path) -> list[Path]:
    """Staging folders in `directory` whose export is dead.

    One of this machine is dead when its PID is (or is ours, reused, but not one we
    made); one of another machine when it is older than `FOREIGN_STALE_SECONDS`.
    """
    found = []
    here, now = host_name(), time.time()
    for entry in directory.glob(f"*{_MARK}*"):
        owner = _owner(entry)
        if owner is None or not entry.is_dir() or entry.is_symlink():
            continue
        host, pid = owner
        if host == here:
            ours = pid == os.getpid() and entry in _OURS
            dead = not ours and (pid == os.getpid() or not _pid_alive(pid))
        else:
            try:
                dead = now - entry.stat().st_mtime > FOREIGN_STALE_SECONDS
            except FileNotFoundError:  # its export just finished and removed it
                continue
        if dead:
            found.append(entry)
    return found


def _recover_locked(directory: Path) -> list[Path]:
    removed = []
    for entry in _stale(directory):
        if (entry / PLAN).is_file():
            _roll_forward(entry, directory)  # committed: the new set completes
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def remove_stale_staging(directory: Path) -> list[Path]:
    """Recover what dead exports left in `directory`; return the staging folders removed.

    A dead export's committed publish is finished; an uncommitted one is deleted.
    """
    if not directory.is_dir():
        return []
    if not _stale(directory):
        return []
    with folder_lock(directory):
        return _recover_locked(directory)


@contextlib.contextmanager
def staging_dir(destination: Path) -> Iterator[Path]:
    """A private folder next to `destination`, removed on exit whatever happens."""
    directory = destination.parent
    remove_stale_staging(directory)
    try:
        prefix = f".{destination.name}{_MARK}{host_name()}-{os.getpid()}-"
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
    except OSError as e:
        raise InputError(
            f"Cannot create files in the output folder {directory}: {e.strerror}. "
            "Choose another -o path."
        ) from e
    _OURS.add(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        _OURS.discard(path)


def probe_writable(directory: Path) -> None:
    """Raise `InputError` unless a staging folder can be made (and removed) in `directory`.

    `os.access` says yes to root everywhere, even where no file can be made (e.g. /proc),
    so the only honest test is to try.
    """
    with staging_dir(directory / "probe"):
        pass


def disk_error(e: OSError, what: str, where: Path) -> OutputWriteError | None:
    """The clear error for a full disk or a file-size limit, or None for other errors."""
    if e.errno not in _DISK_ERRORS:
        return None
    return OutputWriteError(
        f"Writing {what} in {where} failed: {_DISK_ERRORS[e.errno]} ({e.strerror}). "
        "Nothing was written. Free some space or raise the limit (ulimit -f), or choose "
        "another -o path.",
        e.errno,
    )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _roll_forward(staging: Path, directory: Path) -> None:
    """Run the committed plan's remaining moves, then delete the plan."""
    moves = json.loads((staging / PLAN).read_text())
    for i, (source_name, target_name) in enumerate(moves):
        source, target = staging / source_name, directory / target_name
        if not source.exists():
            continue  # moved before the previous attempt died
        test_pause(f"move-{i}")
        if target.is_dir() and not target.is_symlink():
            # A folder cannot be renamed onto a non-empty folder: the old one goes into
            # the staging folder first (deleted with it).
            target.rename(staging / f"previous-{i}")
        os.replace(source, target)
    (staging / PLAN).unlink()


def publish(moves: list[tuple[Path, Path]], staging: Path, *, force: bool) -> None:
    """Move every staged path onto its destination, all or nothing (see the module doc).

    `moves` are `(staged path inside staging, destination beside staging)` pairs, in the
    order they are made (companions before their primary). Without `force`, a destination
    that appeared since the export started (another export got there first) stops the
    publish before anything moves.
    """
    directory = staging.parent
    with folder_lock(directory):
        _recover_locked(directory)
        taken = [t for _, t in moves if t.exists() or t.is_symlink()]
        if taken and not force:
            raise InputError(
                f"{taken[0]} was created by someone else (another export to the same path?) "
                "while this export ran; nothing was written. Pass --force (force=True) to "
                "replace it."
            )
        for _, target in moves:
            if os.path.dirname(os.path.abspath(target)) != os.path.abspath(directory):
                raise ValueError(f"{target} is not beside the staging folder {staging}")
        plan = [[str(s.relative_to(staging)), t.name] for s, t in moves]
        pending = staging / f"{PLAN}.pending"
        pending.write_text(json.dumps(plan))
        _fsync(pending)
        os.replace(pending, staging / PLAN)  # the commit point
        _fsync(staging)
        test_pause("committed")
        _roll_forward(staging, directory)
