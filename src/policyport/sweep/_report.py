"""What a sweep tells its user: a progress bar while it runs, a table and a JSON report
at the end."""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .._version import __version__
from ._jobs import STATUSES, ModelResult

_MARKS = {"exported": "✓", "failed": "✗", "refused": "!", "error": "‼"}


def counts(results: Sequence[ModelResult]) -> dict[str, int]:
    """How many models ended in each status (every status listed, zeros included)."""
    found = Counter(r.status for r in results)
    return {status: found.get(status, 0) for status in STATUSES}


def summary_line(results: Sequence[ModelResult], seconds: float) -> str:
    parts = ", ".join(f"{n} {status}" for status, n in counts(results).items() if n)
    rate = len(results) / seconds if seconds > 0 else 0.0
    models = f"{len(results)} model{'' if len(results) == 1 else 's'}"
    return f"{models} in {seconds:.1f} s ({rate:.2f}/s): {parts or 'none'}"


def summary_table(results: Sequence[ModelResult]) -> str:
    """One row per model: status, seconds, and what it wrote or why it did not."""
    width = max([len("model"), *(len(r.model) for r in results)])
    lines = [f"   {'model':<{width}}  {'status':<8}  {'seconds':>7}  written / why not"]
    for r in results:
        what = ", ".join(r.paths) if r.ok else r.message.replace("\n", " ")
        seconds = r.seconds.get("total", 0.0)
        mark = _MARKS[r.status]
        lines.append(f"{mark}  {r.model:<{width}}  {r.status:<8}  {seconds:7.2f}  {what}")
    return "\n".join(lines)


def report_json(
    results: Sequence[ModelResult], *, format: str, seconds: float, workers: str
) -> dict[str, Any]:
    return {
        "policyport_version": __version__,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "format": format,
        "workers": workers,
        "seconds": seconds,
        "counts": counts(results),
        "models": [r.to_json() for r in results],
    }


def write_json(path: Path, data: Any) -> None:
    """Written whole or not at all (a temporary file renamed into place)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_report_path() -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(f"policyport-sweep-{stamp}.json")


def _columns(stream: TextIO) -> int:
    """The terminal's width (0 when it reports none: a bar would draw nothing there)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError):
        return 0


class SweepProgress:
    """A tqdm bar with counts and rate on a terminal; one plain line per model otherwise
    (logs and CI keep every outcome)."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.bar = None
        if self.stream.isatty() and _columns(self.stream) > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=self.stream, unit="model", dynamic_ncols=True)

    def __call__(self, result: ModelResult, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{result.status} {Path(result.model).name}", refresh=False)
            if not result.ok:
                self.bar.write(f"{_MARKS[result.status]} {result.model}: {result.status}")
            return
        seconds = result.seconds.get("total", 0.0)
        print(
            f"[policyport] {done}/{total} {result.status:<8} {result.model} ({seconds:.2f} s)",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
