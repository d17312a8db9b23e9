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

_MARK = ".policyport-staging-"


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
        if pid != os.getpid() and not _pid_alive(pid) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def staging_dir(destination: Path) -> Iterator[Path]:
    """A private folder next to `destination`, removed on exit whatever happens."""
    directory = destination.parent
    remove_stale_staging(directory)
    path = Path(tempfile.mkdtemp(prefix=f".{destination.name}{_MARK}{os.getpid()}-", dir=directory))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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
