"""`make run` and `make help`, for real: the recipe starts a real server; a stand-in
for the TUI (which needs a terminal) asks that server for its state with progress-ctl."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import stat
from pathlib import Path

import pytest

from tests.helpers import TIMEOUT, command, free_port

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

ROOT = Path(__file__).resolve().parents[2]
#: Never reinstalled by these tests, however old it looks next to pyproject.toml.
STAMPS = (".venv/.installed-run", ".venv/.installed-redis")


def fake_tui(directory: Path) -> Path:
    """A stand-in for progress-tui: prints the URL it was given and that server's state."""
    path = directory / "fake-tui"
    path.write_text(
        "#!/bin/sh\n"
        'while [ $# -gt 0 ]; do [ "$1" = --url ] && url=$2; shift; done\n'
        'echo "TUI on $url"\n'
        f'exec {command("progress-ctl")} --url "$url" status\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def make(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run make in the project, without the variables of a make that runs the tests."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PORT", "PROGRESS_PORT")
    }
    process = await asyncio.create_subprocess_exec(
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        *(f"-o{stamp}" for stamp in STAMPS),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**inherited, **(env or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 2 * TIMEOUT)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def nothing_listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_port_moves_both_the_server_and_the_tui(tmp_path: Path) -> None:
    """PORT=... or PROGRESS_PORT=...: the server listens there and the TUI goes there;
    when the TUI quits, the server is stopped."""
    tui = fake_tui(tmp_path)
    ports = [free_port(), free_port()]
    while ports[1] == ports[0]:  # two sockets in a row may get the same free port
        ports[1] = free_port()
    results = await asyncio.gather(
        make("run", f"PORT={ports[0]}", f"LOG_DIR={tmp_path / 'a'}", f"TUI_COMMAND={tui}"),
        make(
            "run",
            f"LOG_DIR={tmp_path / 'b'}",
            f"TUI_COMMAND={tui}",
            env={"PROGRESS_PORT": str(ports[1])},
        ),
    )
    for port, (code, out, err) in zip(ports, results, strict=True):
        assert (code, err) == (0, ""), f"port {port}:\n{out}"
        url = f"ws://127.0.0.1:{port}/progress"
        assert f"TUI on {url}\n" in out
        assert re.search(r"^IDLE \(seq 0, at ", out, re.MULTILINE), out
        assert nothing_listens(port)  # the server stopped with the TUI


async def test_a_server_that_cannot_start_stops_make_run(tmp_path: Path) -> None:
    """The port is taken: make run prints the server's sentence and fails, and never
    starts the TUI against whatever holds the port."""
    tui = fake_tui(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = await make(
            "run", f"PORT={port}", f"LOG_DIR={tmp_path}", f"TUI_COMMAND={tui}"
        )
    assert code != 0
    assert "TUI on" not in out
    assert (
        "progress-server did not start:\n"
        f"progress-server: cannot listen on 127.0.0.1:{port}: the address is already in use "
        "(is another server running?)\n"
    ) in err


async def test_a_server_that_never_says_it_listens_stops_make_run(tmp_path: Path) -> None:
    """A server that does not say "listening on" in time (here at once, with its log
    level above info): make run says so and stops, rather than guess."""
    tui = fake_tui(tmp_path)
    code, out, err = await make(
        "run",
        f"PORT={free_port()}",
        f"LOG_DIR={tmp_path}",
        f"TUI_COMMAND={tui}",
        "START_TENTHS=0",
        "SERVER_ARGS=--log-level warning",
    )
    assert code != 0
    assert "TUI on" not in out
    assert (
        "progress-server did not say 'listening on' in 0 s (a --log-level above info hides "
        f"it): see {tmp_path}/server.log\n"
    ) in err


async def test_help_lines_up(tmp_path: Path) -> None:
    """make help: every description starts in the same column, whatever the name."""
    code, out, _ = await make("help")
    assert code == 0
    lines = out.splitlines()
    assert {"run", "screenshot", "help"} <= {line.split()[1] for line in lines}
    columns = {len(line) - len(line.split(maxsplit=2)[2]) for line in lines}
    assert len(columns) == 1, out
