"""The progress-tui command line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import TIMEOUT, command


def run_tui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command("progress-tui"), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def test_help_documents_the_options() -> None:
    """--help names --url, --log-file and the backoff with their environment variables."""
    result = run_tui("--help")
    assert result.returncode == 0
    for words in (
        "--url",
        "PROGRESS_URL",
        "ws://127.0.0.1:3003/progress",
        "--log-file",
        "--reconnect-initial",
        "--reconnect-cap",
        "s start, c cancel",
        "? help",
    ):
        assert words in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--url", "http://127.0.0.1:3003/"], "is not a WebSocket URL"),
        (["--url", "ws://127.0.0.1:99999/progress"], "invalid port"),
        (["--reconnect-initial", "0"], "--reconnect-initial"),
        (["--reconnect-initial", "5", "--reconnect-cap", "1"], "at least --reconnect-initial"),
    ],
)
def test_bad_values_are_usage_errors(args: list[str], words: str) -> None:
    """Bad options: a usage error naming the problem, no traceback, no UI started."""
    result = run_tui(*args)
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_a_cafile_that_is_not_pem_is_a_usage_error(tmp_path: Path) -> None:
    """--cafile with a file that holds no certificate: a usage error, no UI started."""
    cafile = tmp_path / "x.txt"
    cafile.write_text("not a certificate\n")
    result = run_tui("--url", "wss://127.0.0.1:1/progress", "--cafile", str(cafile))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for --cafile: {cafile} holds no PEM certificate."
    )
    assert "Traceback" not in result.stderr


def test_an_unwritable_log_file_is_one_line(tmp_path: Path) -> None:
    """A log file that cannot be created: one clear line, exit status 2."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_tui("--log-file", str(blocker / "tui.log"))
    assert result.returncode == 2
    assert result.stderr.startswith("progress-tui: cannot write the log file ")
    assert "Traceback" not in result.stderr


def test_every_one_of_several_urls_is_checked() -> None:
    """--url repeated, or PROGRESS_URL with URLs separated by spaces: a bad one among
    them is a usage error naming it, and where it came from."""
    good = "ws://127.0.0.1:1/progress"
    typed = run_tui("--url", good, "--url", "http://x")
    from_env = run_tui(env={"PROGRESS_URL": f"{good}  http://x"})
    sentence = "'http://x' is not a WebSocket URL like ws://127.0.0.1:3003/progress."
    assert typed.returncode == from_env.returncode == 2
    assert typed.stderr.splitlines()[-1] == f"Error: Invalid value for '--url': {sentence}"
    assert from_env.stderr.splitlines()[-1] == (
        f"Error: Invalid value for '--url' (env var: 'PROGRESS_URL'): {sentence}"
    )
    help_text = " ".join(run_tui("--help").stdout.split())
    assert "Repeat it for instances that share one calculation" in help_text
