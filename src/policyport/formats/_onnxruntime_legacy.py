"""onnxruntime 1.20.1, the oldest wheel for Python 3.13, in a process of its own.

Users deploy with older onnxruntime builds than the one policyport checks with; this
runtime proves an artifact loads and computes the same there. 1.20.1 cannot be installed
beside 1.32 in one environment (same package name) nor imported into the same process
(same native library), so it lives in its own folder, installed once with
`pip install --target` (scripts/test-deps does it), and runs in a worker subprocess that
puts that folder first on `PYTHONPATH` and shares the venv's numpy. No network access
happens at run time: when the folder is missing the runtime says how to install it.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any, cast

import numpy as np

from ._base import Runner, Runtime

VERSION = "1.20.1"
_WORKER = Path(__file__).with_name("_onnxruntime_worker.py")


def install_dir() -> Path:
    """Where onnxruntime 1.20.1 is installed for policyport (XDG cache convention)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "policyport" / f"onnxruntime-{VERSION}"


def install_command() -> str:
    return (
        f"{Path(sys.executable).name} -m pip install --no-deps --target {install_dir()} "
        f"onnxruntime=={VERSION}"
    )


def _missing() -> str | None:
    if (install_dir() / "onnxruntime" / "__init__.py").exists():
        return None
    return (
        f"The runtime 'onnxruntime-1.20' needs onnxruntime {VERSION} in its own folder "
        f"{install_dir()}, which is missing. Install it with: {install_command()} "
        "(scripts/test-deps does this)."
    )


class _Worker:
    """One model loaded in a worker process; called like a `Runner`."""

    def __init__(self, model: Path):
        env = {**os.environ, "PYTHONPATH": str(install_dir())}
        self._process = subprocess.Popen(
            [sys.executable, "-P", str(_WORKER), str(model)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        weakref.finalize(self, _stop, self._process)
        assert self._process.stdin is not None and self._process.stdout is not None  # piped
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        header = json.loads(self._stdout.readline() or b'{"error": "worker died"}')
        if "error" in header:
            _stop(self._process)
            raise RuntimeError(header["error"])
        if header["version"] != VERSION:
            _stop(self._process)
            raise RuntimeError(
                f"expected onnxruntime {VERSION}, the worker has {header['version']}"
            )
        self.outputs: list[str] = header["outputs"]

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        buffer = io.BytesIO()
        np.savez(buffer, **cast(dict[str, Any], inputs))  # numpy's stub: names vs allow_pickle
        request = buffer.getvalue()
        self._stdin.write(struct.pack("<Q", len(request)) + request)
        self._stdin.flush()
        head = self._stdout.read(9)
        if len(head) != 9:
            raise RuntimeError(f"the onnxruntime {VERSION} worker died")
        status, size = struct.unpack("<BQ", head)
        payload = self._stdout.read(size)
        if status:
            raise RuntimeError(payload.decode(errors="replace"))
        with np.load(io.BytesIO(payload), allow_pickle=False) as out:
            return {name: out[name] for name in self.outputs}


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def load_legacy(path: Path) -> Runner:
    if (reason := _missing()) is not None:
        from .._errors import MissingDependencyError

        raise MissingDependencyError(reason)
    return _Worker(path)


ONNXRUNTIME_LEGACY = Runtime(
    "onnxruntime-1.20",
    ("onnx",),
    load_legacy,
    lambda: f"onnxruntime-1.20 (onnxruntime {VERSION}, own process)",
    _missing,
)
