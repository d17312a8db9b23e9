"""Library messages kept out of the user's terminal while policyport works.

jax2onnx's onnx-ir logs a WARNING per untyped constant it serialises (about 20 for a
convolutional policy), TensorFlow logs its start-up through absl, and libraries raise
Python warnings about each other's versions: none of it is the user's business during an
export, whose own report says what happened. For the duration of `quiet_libraries()`
those loggers' records below ERROR go to a buffer instead of their handlers, and the
Python warnings raised inside those libraries are held (the user's warning filters still
apply; other code's warnings are shown as usual). Afterwards everything is restored and
the held lines are logged at DEBUG on the `policyport.libraries` logger
(`logging.getLogger("policyport").setLevel("DEBUG")` with a handler shows them; the
CLI's `--verbose` does).
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
    """Holds the libraries' records below ERROR; an ERROR or worse goes on to the root
    logger as it would have (its handlers, else Python's last-resort stderr)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            logging.getLogger().handle(record)
            return
        self.lines.append(f"{record.levelname}:{record.name}: {record.getMessage()}")


def _from_library(filename: str) -> bool:
    """Whether a warning was raised in one of LIBRARY_LOGGERS' packages."""
    parts = os.path.normpath(filename).split(os.sep)
    return any(name in parts for name in LIBRARY_LOGGERS)


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
            # The user's filters stand (`-W error` still raises); of what they let through,
            # the libraries' warnings are held, everyone else's (the policy's, ours) shown.
            show = warnings.showwarning

            def hold(message, category, filename, lineno, *rest):
                if _from_library(filename):
                    buffer.lines.append(f"{category.__name__}: {message} ({filename}:{lineno})")
                else:
                    show(message, category, filename, lineno, *rest)

            warnings.showwarning = hold
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
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            if failed and text:  # what the library said may be why it failed: shown
                sys.stderr.write(text)
            for line in text.splitlines():
                LOGGER.debug(line)
