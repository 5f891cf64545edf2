"""``--workers N``: several processes on one port, sharing the calculation through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
from pathlib import Path

import psutil
from websockets.asyncio.client import connect

from tests.helpers import TIME_FACTOR, TIMEOUT, ServerProcess, http_request, recv_type
from tests.server.test_operations import samples, value


async def until_logged(server: ServerProcess, words: str, count: int = 1) -> list[str]:
    async with asyncio.timeout(TIMEOUT):
        while True:
            lines = [line for line in server.lines if words in line]
            if len(lines) >= count:
                return lines
            await asyncio.sleep(0.02)


async def test_workers_need_redis() -> None:
    """--workers 2 alone is a usage error that says why."""
    server = ServerProcess("--workers", "2")
    with contextlib.suppress(RuntimeError):  # it exits before listening
        await server.start()
    assert await server.wait() == 2
    assert any("--workers above 1 needs --redis-url" in line for line in server.lines)


async def test_two_workers_share_the_port_the_clients_and_a_graceful_stop(
    redis_url: str, redis_prefix: str
) -> None:
    """Both workers get clients on the one port; everyone is counted; a worker that dies
    is restarted; SIGTERM to the supervisor closes every client with 1001, exit 0."""
    args = ("--workers", "2", "--redis-url", redis_url, "--redis-prefix", redis_prefix)
    async with ServerProcess(*args, "--step-seconds", "0.05") as server:
        await until_logged(server, "listening on", 2)
        clients = [await connect(server.url) for _ in range(16)]
        ids = [(await recv_type(ws, "hello"))["client_id"] for ws in clients]
        async with asyncio.timeout(TIMEOUT):
            while (await recv_type(clients[0], "clients"))["count"] != 16:
                pass
        connected = await until_logged(server, "connected from", 16)
        assert any(" w1 " in line for line in connected) and any(
            " w2 " in line for line in connected
        )

        # Whichever worker answers a scrape reports every worker's clients.
        for _ in range(4):
            async with asyncio.timeout(TIMEOUT):
                while True:
                    _, _, body = await http_request(server.port, "GET", "/metrics")
                    found = samples(body.decode())
                    if value(found, "progress_clients") == 16:
                        break
                    await asyncio.sleep(0.2)
        assert value(found, "progress_connections_total", result="accepted") == 16
        # A run is counted once, by the worker whose transaction made each change,
        # although both announce it.
        _, _, ack = await http_request(server.port, "POST", "/start")
        # Both workers have clients: once every client has the SUCCESS, both workers
        # have heard of every change of the run.
        for ws in clients:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    state = await recv_type(ws, "state")
                    if (state["calculation_id"], state["state"]) == (
                        ack["calculation_id"],
                        "SUCCESS",
                    ):
                        break
        async with asyncio.timeout(TIMEOUT):
            while True:
                _, _, body = await http_request(server.port, "GET", "/metrics")
                found = samples(body.decode())
                if value(found, "progress_calculations_total", outcome="SUCCESS") >= 1:
                    break
                await asyncio.sleep(0.1)
        assert value(found, "progress_calculations_total", outcome="SUCCESS") == 1
        assert value(found, "progress_state_changes_total", state="STARTING") == 1

        assert server.process is not None
        workers = psutil.Process(server.process.pid).children()
        assert len(workers) == 2
        victim = workers[0]
        (started,) = [line for line in server.lines if f"(pid {victim.pid})" in line]
        number = started.split("worker ")[1].split()[0]
        victims = {
            client_id
            for client_id in ids
            for line in connected
            if f" w{number} " in line and f"client {client_id} " in line
        }
        victim.send_signal(signal.SIGKILL)
        await until_logged(server, "died with status -9: restarting it")
        await until_logged(server, "listening on", 3)

        server.signal(signal.SIGTERM)
        codes = []
        for ws in clients:
            async with asyncio.timeout(TIMEOUT):
                await ws.wait_closed()
            codes.append(ws.close_code)
        assert await server.wait() == 0
    # The killed worker's clients lost their connection; every other one got 1001.
    expected = [1006 if client_id in victims else 1001 for client_id in ids]
    assert codes == expected
    assert any("all workers stopped" in line for line in server.lines)


async def test_a_taken_port_stops_the_workers_with_one_sentence(
    redis_url: str, redis_prefix: str
) -> None:
    """The port is held by another program: one sentence, exit status 1."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        server = ServerProcess(
            "--port",
            port,
            "--workers",
            "2",
            "--redis-url",
            redis_url,
            "--redis-prefix",
            redis_prefix,
        )
        with contextlib.suppress(RuntimeError):  # it exits before listening
            await server.start()
        assert await server.wait() == 1
    assert any("address already in use" in line.lower() for line in server.lines)
    assert not any("Traceback" in line for line in server.lines)


def workers_of(server: ServerProcess) -> list[psutil.Process]:
    """The supervisor's worker processes, as they are now."""
    assert server.process is not None
    return psutil.Process(server.process.pid).children()


def running(process: psutil.Process) -> bool:
    # A zombie has exited: only its new parent (init, or whoever adopted it) has yet
    # to reap it.
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def until_exited(processes: list[psutil.Process]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while any(running(process) for process in processes):
            await asyncio.sleep(0.02)


def kill_leftovers(processes: list[psutil.Process]) -> None:
    """Kill what a failed test left behind: a worker that outlived its supervisor."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


async def healthz(port: int) -> int | None:
    """GET /healthz on a new connection: the status, or None without an answer."""
    try:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                status_line = await reader.readline()
            finally:
                writer.close()
    except (TimeoutError, OSError):
        return None
    parts = status_line.split()
    return int(parts[1]) if len(parts) >= 2 else None


async def test_workers_stop_with_their_supervisor(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """SIGKILL to the supervisor: its workers close their clients with 1001 and exit,
    and the port is free for the next server."""
    args = ("--workers", "2", "--redis-url", redis_url, "--redis-prefix", redis_prefix)
    # The killed supervisor's metrics directory goes there, not in the shared /tmp.
    async with ServerProcess(*args, env={"TMPDIR": str(tmp_path)}) as server:
        await until_logged(server, "listening on", 2)
        clients = [await connect(server.url) for _ in range(8)]
        for ws in clients:
            await recv_type(ws, "hello")
        workers = workers_of(server)
        assert len(workers) == 2
        try:
            server.signal(signal.SIGKILL)
            await until_exited(workers)
        finally:
            kill_leftovers(workers)
        assert await server.wait() == -signal.SIGKILL
        assert server.process is not None
        gone = f"the supervisor (pid {server.process.pid}) is gone"
        assert len([line for line in server.lines if gone in line]) == 2, "\n".join(server.lines)
        for ws in clients:
            async with asyncio.timeout(TIMEOUT):
                await ws.wait_closed()
        assert [ws.close_code for ws in clients] == [1001] * len(clients)
        with socket.socket() as sock:
            # SO_REUSEADDR, as servers set it: only a listener, not the connections
            # closing, keeps the port taken.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", server.port))
            sock.listen()


async def test_a_hung_worker_is_replaced(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    """A worker whose event loop stops (SIGSTOP) sends no more heartbeats: the supervisor
    says so, kills it and starts another, and every new request is answered again."""
    args = ("--workers", "2", "--redis-url", redis_url, "--redis-prefix", redis_prefix)
    timeout = str(1.0 * TIME_FACTOR)
    env = {"TMPDIR": str(tmp_path)}  # the supervisor is killed at the end
    async with ServerProcess(*args, "--worker-timeout", timeout, env=env) as server:
        await until_logged(server, "listening on", 2)
        victim = workers_of(server)[0]
        try:
            victim.suspend()
            await until_logged(server, f"(pid {victim.pid}) sent no heartbeat")
            await until_exited([victim])
            await until_logged(server, "listening on", 3)
        finally:
            kill_leftovers([victim])
        assert len(workers_of(server)) == 2
        statuses = await asyncio.gather(*(healthz(server.port) for _ in range(40)))
        assert statuses == [200] * 40


async def test_stale_metrics_directories_are_removed(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """A supervisor removes the metrics directory a killed one left behind (the pid in
    its name is gone), keeps a running one's, and removes its own when it stops."""
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    stale = tmp_path / f"progress-metrics-{gone.pid}-x1y2z3"
    stale.mkdir()
    (stale / "counter_123.db").write_bytes(b"\0" * 16)
    alive = tmp_path / f"progress-metrics-{os.getpid()}-a1b2c3"  # this test's process
    alive.mkdir()
    args = ("--workers", "2", "--redis-url", redis_url, "--redis-prefix", redis_prefix)
    async with ServerProcess(*args, env={"TMPDIR": str(tmp_path)}) as server:
        await until_logged(server, "listening on", 2)
        assert not stale.exists()
        assert alive.exists()
        assert server.process is not None
        own = f"progress-metrics-{server.process.pid}-"
        assert [name for name in os.listdir(tmp_path) if name.startswith(own)] != []
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
    assert os.listdir(tmp_path) == [alive.name]


async def test_a_stopped_worker_a_killed_supervisor_left_is_killed_by_the_next(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """A worker stopped (SIGSTOP) when its supervisor is killed cannot stop by itself,
    and would keep a share of the port: the next supervisor on that port kills it before
    it starts its own, and then every new request is answered."""
    args = ("--workers", "2", "--redis-url", redis_url, "--redis-prefix", redis_prefix)
    env = {"TMPDIR": str(tmp_path)}
    async with ServerProcess(*args, env=env) as first:
        await until_logged(first, "listening on", 2)
        workers = workers_of(first)
        stopped, other = workers
        try:
            stopped.suspend()
            assert first.process is not None
            supervisor = psutil.Process(first.process.pid)
            first.signal(signal.SIGKILL)
            # (Not first.wait(): its log stays open, the stopped worker holds it.)
            await until_exited(
                [supervisor, other]
            )  # the other stops with it, as it should  # it stops with its supervisor, as it should
            assert running(stopped)  # this one cannot
            port = ("--port", str(first.port))
            async with ServerProcess(*args, *port, env=env) as second:
                await until_logged(second, f"killed worker pid {stopped.pid}, left on port")
                await until_exited([stopped])
                await until_logged(second, "listening on", 2)
                statuses = await asyncio.gather(*(healthz(second.port) for _ in range(30)))
                assert statuses == [200] * 30
        finally:
            kill_leftovers(workers)


async def test_each_change_is_logged_once_by_the_worker_that_made_it(
    redis_url: str, redis_prefix: str
) -> None:
    """Two workers share a run: each state has one INFO line in the whole log, from the
    worker whose transaction made it (the others log it at DEBUG), and the counts of
    connected clients say they are this worker's ("now 3 connected here")."""
    args = ("--workers", "2", "--redis-url", redis_url, "--redis-prefix", redis_prefix)
    async with ServerProcess(*args, "--step-seconds", "0.05") as server:
        await until_logged(server, "listening on", 2)
        clients = [await connect(server.url) for _ in range(8)]
        for ws in clients:
            await recv_type(ws, "hello")
        _, _, ack = await http_request(server.port, "POST", "/start")
        # Once every client has the SUCCESS, both workers have published every change.
        for ws in clients:
            async with asyncio.timeout(TIMEOUT):
                while (await recv_type(ws, "state"))["state"] != "SUCCESS":
                    pass
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0  # every line of the log is in
    calculation = f"(calculation {ack['calculation_id']},"
    logged = [line for line in server.lines if " state " in line and calculation in line]
    assert [line.split(" state ")[1].split()[0] for line in logged] == [
        "STARTING",
        "IN_PROGRESS",
        "ALMOST_DONE",
        "SUCCESS",
    ], "\n".join(logged)
    assert all(" INFO " in line and " here" in line for line in logged)
    joined = [line for line in server.lines if " connected from " in line]
    assert len(joined) == 8
    assert all(re.search(r"\(now \d connected here\)$", line) for line in joined), joined
