"""``--workers N``: several processes on one port, sharing the calculation through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket

import psutil
from websockets.asyncio.client import connect

from tests.helpers import TIMEOUT, ServerProcess, http_request, recv_type
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
        await http_request(server.port, "POST", "/start")
        async with asyncio.timeout(TIMEOUT):
            while True:
                _, _, body = await http_request(server.port, "GET", "/metrics")
                found = samples(body.decode())
                if value(found, "progress_calculations_total", outcome="SUCCESS") >= 1:
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # the other worker has heard of every change by now
        _, _, body = await http_request(server.port, "GET", "/metrics")
        found = samples(body.decode())
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
