"""End to end in real terminals: the installed progress-tui in tmux, twice, side by side
at two sizes, against one real server process."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import TIME_FACTOR, TIMEOUT, ServerProcess, command

#: "✔ Starting", "✘ In progress"...: the step marks of the calculation panel.
STEP_MARKS = re.compile(r"([✔✘▶·]) (Starting|In progress|Almost done|Success|Canceled)\b")


class Terminal:
    """A detached tmux session of its own size, on a tmux server shared by the test."""

    def __init__(self, socket: str, name: str, width: int, height: int) -> None:
        self.socket, self.name = socket, name
        self.width, self.height = width, height

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
        size = ("-x", str(self.width), "-y", str(self.height))
        self.tmux("new-session", "-d", "-s", self.name, *size, shell_command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def press(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def alive(self) -> bool:
        result = subprocess.run(
            ["tmux", "-L", self.socket, "has-session", "-t", self.name],
            capture_output=True,
            timeout=TIMEOUT,
        )
        return result.returncode == 0

    async def shows(self, *texts: str, timeout: float = TIMEOUT) -> str:
        """Wait until the screen shows every one of `texts`; returns the screen."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            screen = self.screen()
            if all(text in screen for text in texts):
                return screen
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.name} never showed {texts}:\n{screen}")
            await asyncio.sleep(0.05)

    async def closed(self) -> None:
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while self.alive() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert not self.alive(), f"progress-tui did not quit in {self.name}"


@pytest.fixture
def tmux_socket() -> Iterator[str]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the end-to-end test; `make test` installs it")
    socket = f"progress-e2e-{uuid.uuid4().hex[:8]}"
    yield socket
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=TIMEOUT)


def tui_command(url: str, name: str, log_file: Path) -> str:
    # COLUMNS and LINES, if the test runner has them, would override the pane's size.
    env = "env -u COLUMNS -u LINES LANG=C.UTF-8 TERM=xterm-256color"
    tui = shlex.quote(command("progress-tui"))
    return f"{env} {tui} --url {url} --name {name} --log-file {log_file}"


def step_marks(screen: str) -> list[tuple[str, str]]:
    return STEP_MARKS.findall(screen)


async def test_two_tuis_side_by_side_show_the_same_calculation(
    tmux_socket: str, tmp_path: Path
) -> None:
    """alice's TUI at 60x20 starts, bob's at 120x36 cancels: both panes show the same
    state, step marks and "started by alice@laptop". The server stops: both go stale and
    reconnect to the next one; each log file holds the connect and the loss; q quits
    with a clean close."""
    narrow = Terminal(tmux_socket, "alice", 60, 20)
    wide = Terminal(tmux_socket, "bob", 120, 36)
    logs = {"alice": tmp_path / "alice.log", "bob": tmp_path / "bob.log"}
    step = str(1.0 * TIME_FACTOR)
    async with ServerProcess("--step-seconds", step) as server:
        narrow.open(tui_command(server.url, "alice@laptop", logs["alice"]))
        wide.open(tui_command(server.url, "bob@desk", logs["bob"]))
        for terminal in (narrow, wide):
            await terminal.shows("● Connected", "○ IDLE", "2 clients")

        narrow.press("s")
        await wide.shows("▶ IN_PROGRESS")
        wide.press("c")
        screens = [await terminal.shows("✘ CANCELED", "✘ Canceled") for terminal in (narrow, wide)]
        marks = [("✔", "Starting"), ("✘", "In progress"), ("·", "Almost done"), ("✘", "Canceled")]
        for screen in screens:
            assert step_marks(screen) == marks
            assert "started by alice@laptop" in screen
            assert "Traceback" not in screen
        assert "alice@laptop (you)" in screens[0] and "bob@desk (you)" in screens[1]
        await wide.shows("History", "✘ IN_PROGRESS", "✘ you")  # who canceled, and when

        server.signal(15)  # SIGTERM: going away
        assert await server.wait() == 0
        for terminal in (narrow, wide):
            await terminal.shows("✘ CANCELED (stale)", "Reconnecting in")

    async with ServerProcess("--port", str(server.port), "--step-seconds", step) as again:
        for terminal in (narrow, wide):
            screen = await terminal.shows("● Connected", "○ IDLE", timeout=TIMEOUT + 10)
            assert "stale" not in screen
        for name, log in logs.items():
            text = log.read_text()
            assert server.url in text, f"{name}'s log file says nothing of the connection"
            assert "lost" in text.lower(), f"{name}'s log file says nothing of the loss"
            assert "Traceback" not in text

        for terminal in (narrow, wide):
            terminal.press("q")
        for terminal in (narrow, wide):
            await terminal.closed()
        await asyncio.sleep(0.2)
        assert sum("disconnected, code 1000" in line for line in again.lines) == 2
