"""The test tiers: the markers name real tests, and the fast tier is a third of the suite
that still exports every format."""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

from conftest import CONSUMER_FILES, SLOW_FILES, SLOW_TESTS, tier_markers
from policyport.formats import FORMATS

TESTS = Path(__file__).parent
FAST = "not consumer and not slow"


def _test_functions(file: str) -> set[str]:
    tree = ast.parse((TESTS / file).read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name[:5] == "test_"}


def test_every_marked_file_and_test_exists():
    """A renamed test or file fails here rather than slipping into the fast tier."""
    for file in CONSUMER_FILES | SLOW_FILES:
        assert (TESTS / file).is_file(), file
    for file, patterns in SLOW_TESTS.items():
        names = _test_functions(file)
        for pattern in patterns:
            assert fnmatch.filter(names, pattern), f"{file}: no test matches {pattern!r}"
    assert tier_markers("test_cpp.py", "test_anything") == ["consumer"]
    assert tier_markers("test_reliability.py", "test_sigkill_mid_publish") == ["slow"]
    assert tier_markers("test_reliability.py", "test_damaged_model_files_exit_2") == []


def test_the_fast_tier_is_a_third_of_the_suite_and_exports_every_format():
    """What the README's fast command selects, collected: at least a third of the tests,
    no consumer, and each registered format's export (tests/test_exporters.py)."""
    readme = (TESTS.parent / "README.md").read_text()
    assert f'.venv/bin/python -m pytest -m "{FAST}"' in readme

    def collect(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
            cwd=TESTS.parent,
            capture_output=True,
            text=True,
            check=True,
        )
        return [line for line in done.stdout.splitlines() if "::" in line]

    everything, fast = collect(), collect("-m", FAST)
    assert 3 * len(fast) >= len(everything), (len(fast), len(everything))
    assert not [t for t in fast if Path(t.split("::")[0]).name in CONSUMER_FILES]
    exports = [t for t in fast if "test_exporters.py::test_export_passes_parity" in t]
    for name in FORMATS:
        assert any(re.search(rf"\[{re.escape(name)}-", t) for t in exports), name
