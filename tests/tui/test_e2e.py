"""End to end in a real terminal: the installed progress-tui in tmux, a real server process."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import TIME_FACTOR, TIMEOUT, ServerProcess, command


class Terminal:
    """A detached tmux session of 100x30 on a tmux server of its own."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
        return result.stdout

    def open(self, shell_command: str) -> None:
        self.tmux("new-session", "-d", "-s", "e2e", "-x", "100", "-y", "30", shell_command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "e2e")

    def press(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "e2e", *keys)

    def alive(self) -> bool:
        return (
            subprocess.run(
                ["tmux", "-L", self.socket, "has-session", "-t", "e2e"],
                capture_output=True,
                timeout=TIMEOUT,
            ).returncode
            == 0
        )

    async def shows(self, *texts: str, timeout: float = TIMEOUT) -> str:
        """Wait until the screen shows every one of `texts`; returns the screen."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            screen = self.screen()
            if all(text in screen for text in texts):
                return screen
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the screen never showed {texts}:\n{screen}")
            await asyncio.sleep(0.05)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the end-to-end test; `make test` installs it")
    term = Terminal(f"progress-e2e-{uuid.uuid4().hex[:8]}")
    yield term
    subprocess.run(["tmux", "-L", term.socket, "kill-server"], capture_output=True, timeout=TIMEOUT)


def tui_command(url: str, log_file: Path) -> str:
    env = "env LANG=C.UTF-8 TERM=xterm-256color"
    return f"{env} {shlex.quote(command('progress-tui'))} --url {url} --log-file {log_file}"


async def test_the_tui_in_a_real_terminal(terminal: Terminal, tmp_path: Path) -> None:
    """Connect, s runs to SUCCESS on screen, the server stops mid-run and comes back, the
    TUI follows, q quits."""
    step = str(0.5 * TIME_FACTOR)
    async with ServerProcess("--step-seconds", step) as server:
        terminal.open(tui_command(server.url, tmp_path / "tui.log"))
        await terminal.shows("Connected to", "IDLE", "1 client")

        terminal.press("s")
        screen = await terminal.shows("✔ SUCCESS", "✔ Success")
        for state in ("STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"):
            assert state in screen  # each one in the event log

        # SIGTERM in the middle of a second run: going away, stale, reconnecting.
        terminal.press("s")
        await terminal.shows("▶ IN_PROGRESS")
        server.signal(15)
        assert await server.wait() == 0
        await terminal.shows("going away (1001)", "Reconnecting in", "stale")

    async with ServerProcess("--port", str(server.port), "--step-seconds", step) as again:
        await terminal.shows("Connected to", "1 client", timeout=TIMEOUT + 10)
        screen = await terminal.shows("○ IDLE")
        assert "stale" not in screen
        assert "Traceback" not in screen

        terminal.press("q")
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while terminal.alive() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert not terminal.alive(), "q did not quit progress-tui"
        await asyncio.sleep(0.2)
        assert any("disconnected, code 1000" in line for line in again.lines)
    assert "Traceback" not in (tmp_path / "tui.log").read_text()
