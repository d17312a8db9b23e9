"""Issue 13, item 11: the README's test command installs what the suite needs (as CI
does), so a newcomer runs the whole suite with nothing skipped."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "scripts" / "test-deps"


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    after = readme.split("run the test suite", 1)[1]
    [command] = re.findall(r"```bash\n(.*?)\n```", after, flags=re.S)[:1]
    return command


def test_the_readme_command_installs_the_test_dependencies_and_ci_runs_it_verbatim():
    command = _readme_test_command()
    assert "bash scripts/test-deps" in command and command.endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines()
    assert "apt-get" not in ci  # installing is the script's job, for CI and newcomers alike


def _fake_apt(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose apt-get only records its arguments; chromium pointed at nothing."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    apt.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env["CHROMIUM"] = str(tmp_path / "no-chromium")
    return env, log


def test_the_script_installs_a_missing_chromium_with_apt(tmp_path):
    env, log = _fake_apt(tmp_path)
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    if os.geteuid() == 0:
        assert done.returncode == 0, done.stderr
        assert log.read_text().splitlines() == ["update", "install -y chromium"]
        assert "installing chromium with apt-get" in done.stderr
    else:  # without root it cannot install: it says what to run instead
        assert "missing chromium" in done.stderr


def test_the_script_does_nothing_when_everything_is_there(tmp_path):
    env, log = _fake_apt(tmp_path)
    present = tmp_path / "chromium"
    present.write_text("#!/bin/sh\n")
    present.chmod(0o755)
    env["CHROMIUM"] = str(present)
    tools = ("g++", "cmake", "node", "npm")
    missing = [t for t in tools if subprocess.run(["which", t], capture_output=True).returncode]
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if not missing:  # apt-get runs only for what is missing
        assert not log.exists()
    elif os.geteuid() == 0:
        assert log.read_text().splitlines()[-1].startswith("install -y")
