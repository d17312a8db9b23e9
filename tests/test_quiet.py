"""What an export keeps out of the terminal (`_quiet.py`), and what it must not: the
libraries' notices are held; the user's own warnings, the user's `-W error`, a library's
ERROR and what a failing native import printed still reach them."""

from __future__ import annotations

import logging
import os
import sys
import warnings

import pytest

from policyport._quiet import native_stderr, quiet_libraries

JAX_FILE = os.path.join("site-packages", "jax", "_src", "numpy", "lax_numpy.py")


def test_library_notices_are_held_and_logged_at_debug():
    with warnings.catch_warnings(record=True) as shown, quiet_libraries() as held:
        warnings.simplefilter("always")
        logging.getLogger("onnx_ir").warning("an untyped constant")
        warnings.warn_explicit("jax is old", DeprecationWarning, JAX_FILE, 1)
    assert held == [
        "WARNING:onnx_ir: an untyped constant",
        f"DeprecationWarning: jax is old ({JAX_FILE}:1)",
    ]
    assert shown == []


def test_the_users_warnings_and_filters_stand():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with quiet_libraries() as held:
            warnings.warn("the policy's own warning", UserWarning, stacklevel=1)
        assert [str(w.message) for w in shown] == ["the policy's own warning"]
        assert held == []
        warnings.simplefilter("error")
        with pytest.raises(DeprecationWarning), quiet_libraries():
            warnings.warn_explicit("jax is old", DeprecationWarning, JAX_FILE, 1)


def test_a_library_error_still_reaches_the_terminal(caplog):
    with quiet_libraries() as held:
        logging.getLogger("jax").error("a real jax error")
    assert held == []
    assert [r.getMessage() for r in caplog.records] == ["a real jax error"]  # via the root


def test_a_failing_native_import_shows_what_it_printed(capfd):
    with pytest.raises(RuntimeError), native_stderr():
        os.write(2, b"native: cannot load the kernel library\n")
        raise RuntimeError("the import failed")
    assert "cannot load the kernel library" in capfd.readouterr().err
    with native_stderr():
        os.write(2, b"native: start-up notice\n")
    sys.stderr.flush()
    assert "start-up notice" not in capfd.readouterr().err
