"""Writing artifacts so a reader never sees half of one.

Everything is built in a staging folder beside the destination (same filesystem, so a
rename is atomic) and moved into place only when complete and checked. A staging folder
left by a killed export is removed by the next export into the same folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ._errors import InputError

_MARK = ".policyport-staging-"
# Staging folders this process made and has not removed yet: a folder carrying our PID
# that is not in here was left by an earlier process that had the same PID.
_OURS: set[Path] = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(directory: Path) -> list[Path]:
    """Delete staging folders in `directory` whose export process is gone."""
    removed = []
    for entry in directory.glob(f"*{_MARK}*"):
        try:
            pid = int(entry.name.split(_MARK, 1)[1].split("-", 1)[0])
        except ValueError:
            continue
        ours = pid == os.getpid() and entry in _OURS
        alive = pid != os.getpid() and _pid_alive(pid)
        if not ours and not alive and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def staging_dir(destination: Path) -> Iterator[Path]:
    """A private folder next to `destination`, removed on exit whatever happens."""
    directory = destination.parent
    remove_stale_staging(directory)
    try:
        path = Path(
            tempfile.mkdtemp(prefix=f".{destination.name}{_MARK}{os.getpid()}-", dir=directory)
        )
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


def publish(staged: tuple[Path, ...], destinations: tuple[Path, ...], staging: Path) -> None:
    """Move staged paths onto their destinations, companions first, the primary last.

    A file replaces its old version in one atomic rename. A folder cannot be renamed onto
    a non-empty folder, so the old one is first renamed into the staging folder (deleted
    with it); between the two renames the destination is briefly absent, never partial.
    """
    for i, (source, target) in enumerate(reversed(list(zip(staged, destinations, strict=True)))):
        if target.is_dir() and not target.is_symlink():
            target.rename(staging / f"previous-{i}")
        os.replace(source, target)
