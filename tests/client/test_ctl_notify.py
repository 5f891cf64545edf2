"""`progress-ctl watch --notify` against real servers, in a real terminal (a pty): the
bell and the desktop notification reach the terminal, and stdout stays the script's."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import termios
from collections.abc import Iterator
from typing import Any

import pytest

from progress_server.server import ProgressServer
from tests.client.test_ctl import finish, readline, run_ctl
from tests.helpers import TIME_FACTOR, TIMEOUT, command

BEL = b"\x07"
ESC = b"\x1b"
#: The variables by which the notification is picked: left out, so that the test's
#: terminal, whatever runs the suite, is a plain xterm (OSC 777) outside tmux.
TERMINAL_VARIABLES = (
    "TMUX",
    "TERM_PROGRAM",
    "LC_TERMINAL",
    "ITERM_SESSION_ID",
    "KITTY_WINDOW_ID",
    "WEZTERM_PANE",
)
OSC_777 = re.compile(
    rb"\x1b\]777;notify;progress;Calculation (\w+) done \(SUCCESS\) after \d+\.\d s\x07"
)


def plain_terminal(**extra: str) -> dict[str, str]:
    environ = {name: value for name, value in os.environ.items() if name not in TERMINAL_VARIABLES}
    return {**environ, "TERM": "xterm-256color", **extra}


class Pty:
    """A pseudo-terminal: what a program writes to its side is read from :attr:`master`."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        os.set_blocking(self.master, False)

    def written(self) -> bytes:
        """All that was written to the terminal so far."""
        data = b""
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                return data
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty() -> Iterator[Pty]:
    terminal = Pty()
    yield terminal
    terminal.close()


def take_terminal() -> None:
    """In the child: make its stdin, the pty, the controlling terminal (/dev/tty) of
    the new session it leads."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def ctl(
    *args: str,
    env: dict[str, str],
    terminal: Pty | None = None,
    stderr: int | None = None,
) -> asyncio.subprocess.Process:
    """progress-ctl in a session of its own (never the terminal that runs the suite),
    with ``terminal`` as its controlling terminal if given; stdout is a pipe, as in a
    script, and stderr too unless given."""
    options: dict[str, Any] = {"start_new_session": True}
    if terminal is not None:
        options["preexec_fn"] = take_terminal
    return await asyncio.create_subprocess_exec(
        command("progress-ctl"),
        *args,
        stdin=terminal.slave if terminal is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr if stderr is not None else asyncio.subprocess.PIPE,
        env=env,
        **options,
    )


async def test_until_done_rings_the_terminal_and_keeps_stdout_clean(
    server: ProgressServer, pty: Pty
) -> None:
    """watch --until-done --notify in a terminal: at SUCCESS, the bell and an OSC 777
    naming the calculation reach the controlling terminal; stdout holds the state lines
    alone, as without --notify; exit status 0."""
    watch = await ctl(
        "--url", server.url, "watch", "--until-done", "--notify", env=plain_terminal(), terminal=pty
    )
    assert (await readline(watch)).startswith("IDLE ")
    code, out, _ = await run_ctl("--url", server.url, "start")
    assert code == 0
    calculation_id = out.split()[-1]
    code, out, err = await finish(watch)
    assert (code, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines()] == [
        "STARTING",
        "IN_PROGRESS",
        "ALMOST_DONE",
        "SUCCESS",
    ]
    assert "\x07" not in out and "\x1b" not in out
    written = pty.written()
    match = OSC_777.search(written)
    assert match is not None, f"no OSC 777 in what the terminal got: {written!r}"
    assert match.group(1).decode() == calculation_id
    assert written.count(BEL) == 2  # the bell, and the OSC's end
    assert written.index(BEL) < written.index(ESC)  # the bell first


async def test_a_cancel_is_said_with_who_and_inside_tmux_passed_through(pty: Pty) -> None:
    """In a tmux pane ($TMUX set), a run canceled by bob: the bell bare, the OSC wrapped
    in tmux's passthrough (each ESC doubled), saying who canceled it and during what;
    exit status 1."""
    async with ProgressServer(port=0, step_seconds=5.0 * TIME_FACTOR) as server:
        env = plain_terminal(TMUX="/tmp/tmux-test/default,1,0", TERM="tmux-256color")
        watch = await ctl(
            "--url", server.url, "watch", "--until-done", "--notify", env=env, terminal=pty
        )
        assert (await readline(watch)).startswith("IDLE ")
        assert (await run_ctl("--url", server.url, "start"))[0] == 0
        assert (await readline(watch)).startswith("STARTING ")
        assert (await run_ctl("--url", server.url, "--name", "bob@desk", "cancel"))[0] == 0
        code, out, err = await finish(watch)
    assert (code, err) == (1, "")
    assert out.splitlines()[-1].startswith("CANCELED ")
    written = pty.written()
    assert re.fullmatch(
        rb"\x07\x1bPtmux;\x1b\x1b\]777;notify;progress;Calculation \w+ canceled by bob@desk "
        rb"during STARTING, after \d+\.\d s\x07\x1b\\",
        written,
    ), written


async def test_without_a_terminal_nothing_is_written(server: ProgressServer) -> None:
    """No controlling terminal and stderr a pipe (cron, CI): the end is printed as
    ever, and no escape sequence goes anywhere."""
    watch = await ctl(
        "--url", server.url, "watch", "--until-done", "--notify", env=plain_terminal()
    )
    assert (await readline(watch)).startswith("IDLE ")
    assert (await run_ctl("--url", server.url, "start"))[0] == 0
    code, out, err = await finish(watch)
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith("SUCCESS ")
    assert not re.search("[\x07\x1b]", out)


async def test_stderr_is_the_terminal_when_there_is_no_controlling_one(
    server: ProgressServer, pty: Pty
) -> None:
    """No controlling terminal, but stderr is one: the sequences go there."""
    watch = await ctl(
        "--url",
        server.url,
        "watch",
        "--until-done",
        "--notify",
        env=plain_terminal(),
        stderr=pty.slave,
    )
    assert (await readline(watch)).startswith("IDLE ")
    assert (await run_ctl("--url", server.url, "start"))[0] == 0
    stdout, _ = await asyncio.wait_for(watch.communicate(), 2 * TIMEOUT)
    assert watch.returncode == 0 and b"\x07" not in stdout
    written = pty.written()
    assert written.startswith(BEL) and OSC_777.search(written), written


async def test_watch_notifies_each_end_it_saw_coming(server: ProgressServer, pty: Pty) -> None:
    """watch --notify without --until-done: a run already over when it connected rings
    nothing; each run it saw running rings once at its end; it watches on until Ctrl-C."""
    assert (await run_ctl("--url", server.url, "start", "--wait"))[0] == 0
    watch = await ctl("--url", server.url, "watch", "--notify", env=plain_terminal(), terminal=pty)
    assert (await readline(watch)).startswith("SUCCESS ")  # the run before it came
    for _ in range(2):
        assert (await run_ctl("--url", server.url, "start"))[0] == 0
        line = await readline(watch)
        while not line.startswith("SUCCESS "):
            line = await readline(watch)
    watch.send_signal(signal.SIGINT)
    code, _, err = await finish(watch)
    assert (code, err) == (130, "")
    written = pty.written()
    assert len(OSC_777.findall(written)) == 2, written
    assert written.count(BEL) == 4


async def test_notify_is_said_in_the_help() -> None:
    """watch --help says what --notify does and what tmux needs for it."""
    code, out, _ = await run_ctl("watch", "--help")
    assert code == 0
    assert "--notify" in out and "allow-passthrough" in out
