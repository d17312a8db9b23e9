"""The committed gridworld policy as C on a Cortex-M4F, run bare-metal under QEMU: the
example in examples/mcu/ built with arm-none-eabi-gcc and run on `mps2-an386`; every action
must equal JAX's (the firmware compares with the actions prepare.py computed in JAX)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mcu"
ROWS, ALL_MASKED = 1000, 4  # prepare.py makes its first 4 rows all masked
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm")
LIBM_ONLY = {"fmaxf", "fminf", "expf", "logf", "tanhf", "sqrtf", "memcpy", "memset"}

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason="needs gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm "
    "(scripts/test-deps installs them)",
)


def _run(*command: str | Path, timeout: int = 600) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mcu")
    _run(sys.executable, EXAMPLE / "prepare.py", folder, str(ROWS))
    _run("make", "-s", "-C", EXAMPLE, f"BUILD={folder}")
    return folder


def test_the_firmware_chooses_jaxs_actions_under_qemu(build):
    out = _run(
        "qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting",
        "-kernel", build / "firmware.elf", timeout=300,
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[-1] == f"matched {ROWS}/{ROWS}"
    actions = [line.split() for line in lines if line.startswith("action ")]
    assert [int(a[1]) for a in actions] == list(range(ROWS))
    assert all(a[2] == "0" for a in actions[:ALL_MASKED])  # all masked: action 0


def test_the_policy_needs_only_libm_and_no_ram_of_its_own(build):
    needed = set(_run("arm-none-eabi-nm", "-u", build / "policy.o").split()[1::2])
    assert needed <= LIBM_ONLY, needed
    text, data, bss = map(int, _run("arm-none-eabi-size", build / "policy.o").split()[6:9])
    # The weights (13k floats for the gridworld policy) are in flash; nothing in RAM.
    assert text > 4 * 13_000 and data == 0 and bss == 0, (text, data, bss)
