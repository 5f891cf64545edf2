"""End to end in real terminals: the installed progress-tui in tmux, twice, side by side
at two sizes, against one real server.

The server runs in the test (a :class:`SteppedServer`): each state of its calculation
lasts until the test moves it on, so a key pressed in a state lands in that state
however busy the machine. Every wait is on what a screen shows, with a deadline.
"""

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

from tests.helpers import TIME_FACTOR, TIMEOUT, SteppedServer, command, free_port

#: "✔ Starting", "✘ In progress"...: the step marks of the calculation panel.
STEP_MARKS = re.compile(r"([✔✘▶·]) (Starting|In progress|Almost done|Success|Canceled)\b")
#: The TUIs' longest wait before reconnecting (--reconnect-cap): the new server is
#: found within it.
RECONNECT_CAP = 0.5 * TIME_FACTOR


class Terminal:
    """A detached tmux session of its own size, on a tmux server shared by the test."""

    def __init__(self, socket: str, name: str, width: int, height: int) -> None:
        self.socket, self.name = socket, name
        self.width, self.height = width, height

    async def tmux(self, *args: str, check: bool = True) -> tuple[int, str]:
        """Run a tmux command (without blocking the server, which runs in this loop);
        returns its exit status and output."""
        process = await asyncio.create_subprocess_exec(
            "tmux",
            "-L",
            self.socket,
            *args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        async with asyncio.timeout(TIMEOUT):
            out, err = await process.communicate()
        assert process.returncode is not None
        if check and process.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {err.decode(errors='replace')}")
        return process.returncode, out.decode(errors="replace")

    async def open(self, shell_command: str) -> None:
        size = ("-x", str(self.width), "-y", str(self.height))
        await self.tmux("new-session", "-d", "-s", self.name, *size, shell_command)

    async def screen(self) -> str:
        return (await self.tmux("capture-pane", "-p", "-t", self.name))[1]

    async def press(self, *keys: str) -> None:
        await self.tmux("send-keys", "-t", self.name, *keys)

    async def alive(self) -> bool:
        status, _ = await self.tmux("has-session", "-t", self.name, check=False)
        return status == 0

    async def shows(self, *texts: str, timeout: float = TIMEOUT) -> str:
        """Wait until the screen shows every one of `texts`; returns the screen."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            screen = await self.screen()
            if all(text in screen for text in texts):
                return screen
            if asyncio.get_running_loop().time() > deadline:
                never = f"{self.name} never showed {texts} in {timeout:g} s"
                raise AssertionError(f"{never}:\n{screen}")
            await asyncio.sleep(0.05)

    async def closed(self) -> None:
        """Wait until the program in it has quit (tmux closes the session then)."""
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while await self.alive() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert not await self.alive(), f"progress-tui did not quit in {self.name}"


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
    backoff = f"--reconnect-initial 0.05 --reconnect-cap {RECONNECT_CAP:g}"
    return f"{env} {tui} --url {url} --name {name} --log-file {log_file} {backoff}"


def step_marks(screen: str) -> list[tuple[str, str]]:
    return STEP_MARKS.findall(screen)


async def test_two_tuis_side_by_side_show_the_same_calculation(
    tmux_socket: str, tmp_path: Path
) -> None:
    """alice's TUI at 60x20 starts, bob's at 120x36 cancels during IN_PROGRESS: both
    panes show the same state, step marks and "started by alice@laptop". The server
    goes away (1001): both go stale and reconnect to the next one on its port; each log
    file holds the connect and the loss; q quits with a clean close (1000)."""
    narrow = Terminal(tmux_socket, "alice", 60, 20)
    wide = Terminal(tmux_socket, "bob", 120, 36)
    terminals = (narrow, wide)
    logs = {"alice": tmp_path / "alice.log", "bob": tmp_path / "bob.log"}
    # Not port 0: once free, the kernel may give that port to another test's server.
    server = SteppedServer(port=free_port())
    async with server:
        await narrow.open(tui_command(server.url, "alice@laptop", logs["alice"]))
        await wide.open(tui_command(server.url, "bob@desk", logs["bob"]))
        for terminal in terminals:
            await terminal.shows("● Connected", "○ IDLE", "2 watching")

        await narrow.press("s")
        for terminal in terminals:
            await terminal.shows("▶ STARTING")
        await server.step()
        await wide.shows("▶ IN_PROGRESS")
        await wide.press("c")
        screens = [await terminal.shows("✘ CANCELED", "✘ Canceled") for terminal in terminals]
        marks = [("✔", "Starting"), ("✘", "In progress"), ("·", "Almost done"), ("✘", "Canceled")]
        for screen in screens:
            assert step_marks(screen) == marks
            assert "started by alice@laptop" in screen
            assert "Traceback" not in screen
        assert "alice@laptop (you)" in screens[0] and "bob@desk (you)" in screens[1]
        # Who canceled, and when: a column each at 120 columns.
        await wide.shows("History", "✘ CANCELED (IN_PROGRESS)", "Canceled by")

        await server.close()  # going away (1001), as on SIGTERM
        for terminal in terminals:
            await terminal.shows("✘ CANCELED (stale)", "Reconnecting in")

    again = SteppedServer(port=server.port)
    async with again:
        for terminal in terminals:
            screen = await terminal.shows("● Connected", "○ IDLE", "2 watching")
            assert "stale" not in screen
        for name, log in logs.items():
            text = log.read_text()
            assert server.url in text, f"{name}'s log file says nothing of the connection"
            assert "lost" in text.lower(), f"{name}'s log file says nothing of the loss"
            # Several TUIs may share a log file: every line says whose.
            assert all(f"[{name}@" in line for line in text.splitlines() if line), text
            assert "Traceback" not in text

        assert again.hub is not None
        connections = list(again.hub.clients)
        assert len(connections) == 2
        for terminal in terminals:
            await terminal.press("q")
        for terminal in terminals:
            await terminal.closed()
        for connection in connections:
            await asyncio.wait_for(connection.wait_closed(), TIMEOUT)
        assert [connection.close_code for connection in connections] == [1000, 1000]


#: The variables by which the desktop notification is picked, left out of the pane, so
#: that whatever terminal runs the suite, the TUI's is a plain one in tmux (OSC 777).
TERMINAL_VARIABLES = (
    "TERM_PROGRAM",
    "LC_TERMINAL",
    "ITERM_SESSION_ID",
    "KITTY_WINDOW_ID",
    "WEZTERM_PANE",
)


async def piped(path: Path, pattern: re.Pattern[bytes], timeout: float = TIMEOUT) -> bytes:
    """Wait until what tmux piped from a pane into ``path`` holds ``pattern``; returns
    all of it."""

    def read() -> bytes:
        return path.read_bytes() if path.exists() else b""

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        data = await asyncio.to_thread(read)
        if pattern.search(data):
            return data
        if asyncio.get_running_loop().time() > deadline:
            tail = data[-600:]
            raise AssertionError(f"no {pattern.pattern!r} in the pane's output: ...{tail!r}")
        await asyncio.sleep(0.05)


async def test_the_end_of_a_run_it_started_rings_the_terminal(
    tmux_socket: str, tmp_path: Path
) -> None:
    """The TUI in tmux starts a run (s) and sees it through to SUCCESS: its raw output,
    as `tmux pipe-pane` hands it on, holds the bell, bare, and the OSC 777 desktop
    notification in tmux's passthrough, naming the calculation; the screen says it too."""
    pane = Terminal(tmux_socket, "alice", 100, 30)
    output = tmp_path / "pane.out"
    server = SteppedServer(port=free_port())
    unset = " ".join(f"-u {name}" for name in TERMINAL_VARIABLES)
    async with server:
        tui = tui_command(server.url, "alice@laptop", tmp_path / "tui.log")
        await pane.open(f"env {unset} {tui}")
        await pane.tmux("pipe-pane", "-o", "-t", pane.name, f"cat >> {shlex.quote(str(output))}")
        await pane.shows("● Connected", "○ IDLE")
        await pane.press("s")
        await pane.shows("▶ STARTING")
        await server.step(3)
        await pane.shows("✔ SUCCESS", "Calculation done")
        end = re.compile(
            rb"\x07\x1bPtmux;\x1b\x1b\]777;notify;progress;"
            rb"Calculation (\w+) done \(SUCCESS\) after 3 min\x07\x1b\\"
        )
        data = await piped(output, end)
        match = end.search(data)
        assert match is not None
        assert match.group(1).decode()[:4] in await pane.screen()  # the id on screen
        assert data.count(b"\x1bPtmux;") == 1
        await pane.press("q")
        await pane.closed()
