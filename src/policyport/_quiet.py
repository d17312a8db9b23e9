"""Library messages kept out of the user's terminal while policyport works.

jax2onnx's onnx-ir logs a WARNING per untyped constant it serialises (about 20 for a
convolutional policy), TensorFlow logs its start-up through absl, and libraries raise
Python warnings about each other's versions: none of it is the user's business during an
export, whose own report says what happened. For the duration of `quiet_libraries()`
those loggers go to a buffer instead of their handlers, and Python warnings are caught;
afterwards everything is restored and the buffered lines are logged at DEBUG on the
`policyport.libraries` logger (`logging.getLogger("policyport").setLevel("DEBUG")` with a
handler shows them; the CLI's `--verbose` does).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# The loggers of the libraries an export drives (their children included).
LIBRARY_LOGGERS = (
    "onnx_ir",
    "onnxscript",
    "jax2onnx",
    "onnx",
    "onnxruntime",
    "absl",
    "tensorflow",
    "tf2onnx",
    "jax",
    "flax",
    "orbax",
)
LOGGER = logging.getLogger("policyport.libraries")


class _Buffer(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}:{record.name}: {record.getMessage()}")


@contextmanager
def quiet_libraries() -> Iterator[list[str]]:
    """Buffer library log records and Python warnings; yields the buffered lines."""
    buffer = _Buffer()
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, list(logger.handlers)))
        logger.propagate = False
        logger.handlers = [buffer]
    try:
        with warnings.catch_warnings():
            for name in LIBRARY_LOGGERS:  # the libraries' warnings only; ours stay as filtered
                warnings.filterwarnings("always", module=rf"{name}(\.|$)")
            warnings.showwarning = lambda message, category, filename, lineno, *a: (
                buffer.lines.append(f"{category.__name__}: {message} ({filename}:{lineno})")
            )
            yield buffer.lines
    finally:
        for logger, propagate, handlers in saved:
            logger.propagate = propagate
            logger.handlers = handlers
        for line in buffer.lines:
            LOGGER.debug(line)


def quietly(fn: F) -> F:
    """`fn` run inside `quiet_libraries()`."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with quiet_libraries():
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]


@contextmanager
def native_stderr() -> Iterator[None]:
    """The process's stderr (file descriptor 2) into a temporary file for the duration, its
    lines then logged at DEBUG on `policyport.libraries`: for what a library's C++ code
    prints itself (TensorFlow's import prints absl and oneDNN notices whatever
    TF_CPP_MIN_LOG_LEVEL says). Keep it short: Python's own stderr goes there too."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                LOGGER.debug(line)
