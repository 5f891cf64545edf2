"""What each make target installs on a fresh tree: `make run` only what it runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import TIMEOUT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

ROOT = Path(__file__).resolve().parents[1]


def dry_run(*args: str, venv: Path) -> str:
    """The commands ``make -n`` would run, for a .venv that does not exist yet (a fresh
    clone), without the variables of a make that runs the tests."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "REDIS")
    }
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), f"VENV={venv}", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def installs(commands: str) -> list[str]:
    return [line.strip() for line in commands.splitlines() if "pip install" in line]


def test_make_run_installs_the_package_without_the_dev_tools(tmp_path: Path) -> None:
    """`make run` on a fresh tree installs the package alone (REDIS=1: with the redis
    extra), never the dev extra and its test and lint tools; the suite's and the
    tools' targets install the dev extra."""
    venv = tmp_path / "venv"
    run = installs(dry_run("run", venv=venv))
    assert run[-1] == f"{venv}/bin/pip install --quiet -e .", run
    assert not any("dev" in line for line in run), run
    cluster = installs(dry_run("run", "REDIS=1", venv=venv))
    assert cluster[-1] == f"{venv}/bin/pip install --quiet -e '.[redis]'", cluster
    assert not any("dev" in line for line in cluster), cluster
    for target in ("test", "lint", "types", "install"):
        assert f"{venv}/bin/pip install --quiet -e '.[dev]'" in installs(
            dry_run(target, venv=venv)
        ), target
