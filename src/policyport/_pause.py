"""Named points where the kill tests stop an export (POLICYPORT_TEST_PAUSE=stage:seconds)."""

from __future__ import annotations

import os
import time


def test_pause(stage: str) -> None:
    """Sleep at `stage` when the test suite asks; a no-op otherwise.

    Used only by the kill tests, to SIGKILL an export at a known point.
    """
    spec = os.environ.get("POLICYPORT_TEST_PAUSE", "")
    name, _, seconds = spec.partition(":")
    if name == stage:
        print(f"[policyport] test pause at {stage}", flush=True)
        time.sleep(float(seconds or 60))
