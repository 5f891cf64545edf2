"""The real `progress-server` command: options, errors, signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import (
    TIME_FACTOR,
    TIMEOUT,
    ServerProcess,
    command,
    free_port,
    join,
    recv_type,
    send_json,
)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command("progress-server"), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_help_documents_every_option() -> None:
    """--help names each option, its default and its environment variable."""
    result = run_cli("--help")
    assert result.returncode == 0
    for option, envvar, default in [
        ("--host", "PROGRESS_HOST", "127.0.0.1"),
        ("--port", "PROGRESS_PORT", "3003"),
        ("--path", "PROGRESS_PATH", "/progress"),
        ("--step-seconds", "PROGRESS_STEP_SECONDS", "2.0"),
        ("--log-level", "PROGRESS_LOG_LEVEL", "info"),
        ("--token", "PROGRESS_TOKEN", ""),
        ("--allow-origin", "PROGRESS_ALLOW_ORIGINS", ""),
        ("--certfile", "PROGRESS_CERTFILE", ""),
        ("--max-clients", "PROGRESS_MAX_CLIENTS", "10000"),
        ("--max-message-bytes", "PROGRESS_MAX_MESSAGE_BYTES", "4096"),
        ("--rate-limit", "PROGRESS_RATE_LIMIT", "20"),
        ("--ping-interval", "PROGRESS_PING_INTERVAL", "20"),
    ]:
        assert option in result.stdout
        assert envvar in result.stdout
        assert default in result.stdout


def test_python_dash_m_is_the_same_command() -> None:
    """python -m progress_server runs the same CLI."""
    result = subprocess.run(
        [sys.executable, "-m", "progress_server", "--version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0
    assert "progress-server" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--port", "70000"], {}, "--port"),
        (["--port", "http"], {}, "--port"),
        (["--step-seconds", "0"], {}, "from 0.001 to 86400"),
        (["--step-seconds", "-1"], {}, "from 0.001 to 86400"),
        (["--step-seconds", "nan"], {}, "from 0.001 to 86400"),
        (["--step-seconds", "1e9"], {}, "from 0.001 to 86400"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--path", "progress"], {}, "must start with '/'"),
        (["--path", "/state"], {}, "taken by the HTTP API"),
        ([], {"PROGRESS_STEP_SECONDS": "soon"}, "--step-seconds"),
        (["--colour"], {}, "No such option"),
        (["--max-clients", "0"], {}, "--max-clients"),
        (["--rate-limit", "0"], {}, "--rate-limit"),
        (["--max-message-bytes", "10"], {}, "--max-message-bytes"),
        (["--ping-timeout", "-1"], {}, "--ping-timeout"),
        (["--certfile", "/nonexistent.pem"], {}, "does not exist"),
        (["--keyfile", __file__], {}, "--keyfile needs --certfile"),
        (["--token", ""], {}, "must not be empty"),
        (["--token", "two words"], {}, "visible ASCII"),
        ([], {"PROGRESS_TOKEN": "密码"}, "visible ASCII"),
        (["--redis-timeout", "3"], {}, "--redis-timeout"),
        # A password with an unencoded "/" (base64 makes them) cannot be read: said in a
        # sentence that quotes none of it.
        ([], {"PROGRESS_REDIS_URL": "redis://:Zm9v/YmFyc2VjcmV0@127.0.0.1:6379/0"}, "%2F"),
    ],
)
def test_bad_values_get_a_usage_error(args: list[str], env: dict[str, str], words: str) -> None:
    """A bad value is a usage error (exit 2) that names the problem, with no traceback."""
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "YmFyc2VjcmV0" not in result.stderr + result.stdout


def test_port_in_use_is_one_clear_line() -> None:
    """A taken port: one line saying so, exit status 1, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "progress-server:" in line]
    assert errors == [
        f"progress-server: cannot listen on 127.0.0.1:{port}: "
        "the address is already in use (is another server running?)"
    ]
    assert "Traceback" not in result.stderr


async def test_port_zero_logs_the_port_it_picked() -> None:
    """--port 0 listens on a free port and the log line names it; clients can connect."""
    async with ServerProcess("--step-seconds", "0.05") as server:
        assert server.port > 0
        ws, _, state = await join(server.url)
        async with ws:
            assert state["step_seconds"] == 0.05
        assert any(f"http://127.0.0.1:{server.port}/healthz" in line for line in server.lines)


async def test_options_come_from_the_environment() -> None:
    """PROGRESS_STEP_SECONDS and PROGRESS_PATH set what the options would."""
    env = {"PROGRESS_STEP_SECONDS": "0.25", "PROGRESS_PATH": "/calc"}
    async with ServerProcess(env=env) as server:
        ws, _, state = await join(server.url.replace("/progress", "/calc"))
        async with ws:
            assert state["step_seconds"] == 0.25


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_clients_with_1001_and_exits_0(signum: int) -> None:
    """SIGTERM or SIGINT mid-run: clients get 1001 (going away), exit status 0 within 2 s."""
    async with ServerProcess("--step-seconds", "0.5") as server:
        clients = [(await join(server.url))[0] for _ in range(2)]
        await send_json(clients[0], {"action": "start"})
        await recv_type(clients[1], "state")
        server.signal(signum)
        loop = asyncio.get_running_loop()
        asked = loop.time()
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(TIMEOUT):
                    while True:
                        await ws.recv()
            assert ws.close_code == 1001
        assert await server.wait() == 0
        took = loop.time() - asked
        assert took < 2.0 * TIME_FACTOR, f"the server took {took:.2f} s to exit"
        assert not [line for line in server.lines if "Traceback" in line or "ERROR" in line]


async def test_stopped_server_refuses_new_clients() -> None:
    """After SIGTERM nothing listens any more."""
    # Not port 0: another test's server may get the same port from the kernel once free.
    async with ServerProcess("--port", str(free_port())) as server:
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
        with pytest.raises(OSError):
            await connect(server.url, open_timeout=TIMEOUT)


def test_a_bad_value_blames_where_it_came_from() -> None:
    """A typo on the command line names the flag only; a bad environment variable is
    named as such, so the user looks in the right place."""
    typed = run_cli("--port", "99999")
    assert typed.returncode == 2
    assert "Invalid value for '--port': 99999" in typed.stderr
    assert "PROGRESS_PORT" not in typed.stderr.split("Error:")[1]
    from_env = run_cli(env={"PROGRESS_PORT": "99999"})
    assert from_env.returncode == 2
    assert "(env var: 'PROGRESS_PORT')" in from_env.stderr


NO_REDIS_EXTRA = "progress-server: --redis-url needs the redis extra: pip install 'progress[redis]'"


@pytest.mark.parametrize(
    "args",
    [
        ["--redis-url", "redis://127.0.0.1:6379/0"],
        ["--workers", "3", "--redis-url", "redis://127.0.0.1:6379/0"],
        ["--log-format", "json", "--redis-url", "redis://127.0.0.1:6379/0"],
    ],
)
def test_redis_url_without_the_extra_is_one_sentence(tmp_path: Path, args: list[str]) -> None:
    """Installed without the redis extra (here: a `redis` package that cannot be
    imported, first on the path), --redis-url, alone or for --workers, says which extra
    to install in one sentence and exits 1; no traceback, no worker started."""
    blocked = tmp_path / "redis"
    blocked.mkdir()
    (blocked / "__init__.py").write_text(
        "raise ImportError('the redis extra is not installed (a test says so)')\n"
    )
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run_cli("--port", "0", *args, env={"PYTHONPATH": path})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "worker 1 started" not in result.stderr
    if "json" in args:
        [line] = result.stderr.splitlines()
        record = json.loads(line)
        assert (record["level"], record["message"]) == ("ERROR", NO_REDIS_EXTRA.split(": ", 1)[1])
    else:
        assert result.stderr.splitlines() == [NO_REDIS_EXTRA]


def test_help_names_the_extras_and_the_http_endpoints() -> None:
    """--help says which extra --redis-url needs and which gives uvloop, and names
    the HTTP endpoints a probe or a scraper needs."""
    result = run_cli("--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    assert "pip install 'progress[redis]'" in result.stdout
    assert "pip install 'progress[fast]'" in result.stdout
    for endpoint in ("/healthz", "/readyz", "/metrics", "/state", "/history"):
        assert endpoint in result.stdout


@pytest.mark.parametrize(
    ("store", "signum"),
    # Every signal takes the same path (the signal handler): one each, and SIGTERM, the
    # operators' usual one, with both stores.
    [
        ("memory", signal.SIGTERM),
        ("redis", signal.SIGTERM),
        ("memory", signal.SIGINT),
        ("redis", signal.SIGHUP),
    ],
    ids=["memory-SIGTERM", "redis-SIGTERM", "memory-SIGINT", "redis-SIGHUP"],
)
async def test_a_signal_names_the_calculation_it_leaves(
    store: str, signum: int, request: pytest.FixtureRequest
) -> None:
    """Stopped while a calculation runs, the server's log names it, its state, and what
    becomes of it: lost with the process (in memory: a WARNING), or going on in Redis."""
    args = ["--step-seconds", "60"]
    if store == "redis":
        redis_url = request.getfixturevalue("redis_url")
        redis_prefix = request.getfixturevalue("redis_prefix")
        args += ["--redis-url", redis_url, "--redis-prefix", redis_prefix]
    async with ServerProcess(*args) as server:
        ws, _, _ = await join(server.url)
        await send_json(ws, {"action": "start"})
        ack = await recv_type(ws, "ack")
        server.signal(signum)
        assert await server.wait() == 0
    name = signal.Signals(signum).name
    fate = (
        ("WARNING ", "it is lost: this server kept it in memory")
        if store == "memory"
        else ("INFO ", "it goes on in Redis: another instance, or this one restarted, drives it on")
    )
    [line] = [line for line in server.lines if f"{name}: stopping" in line]
    assert fate[0] in line
    assert line.endswith(
        f"{name}: stopping with calculation {ack['calculation_id']} STARTING ({fate[1]}); "
        "closing every client with 1001 (going away)"
    ), line


async def test_a_signal_with_no_calculation_running_says_only_that_it_stops() -> None:
    """Idle, the line is the plain one: nothing is left behind."""
    async with ServerProcess() as server:
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
    [line] = [line for line in server.lines if "SIGTERM: stopping" in line]
    assert line.endswith(
        " INFO    progress_server: SIGTERM: stopping, closing every client with 1001 (going away)"
    )
