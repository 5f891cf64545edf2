"""Faults: a killed server, a failing request; clients and the calculation carry on."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import aclosing

import pytest

from progress_client.client import ProgressClient
from progress_client.events import Connected, ConnectionLost, StateReceived
from progress_client.reconnect import ReconnectPolicy
from progress_protocol.states import State
from progress_server.server import ProgressServer
from tests.helpers import (
    STEP,
    TIMEOUT,
    HeldBackend,
    ServerProcess,
    http_request,
    join,
    recv_json,
    recv_type,
    send_json,
    states_until,
)
from tests.raw import HANDSHAKE
from tests.server.test_operations import samples, value


async def test_sigkill_is_detected_and_the_client_comes_back() -> None:
    """kill -9: no close frame, yet the client notices, retries, and resyncs on return."""
    async with ServerProcess() as first:
        client = ProgressClient(first.url, policy=ReconnectPolicy(initial=0.05, cap=0.5))
        async with aclosing(client.events()) as events:
            async with asyncio.timeout(TIMEOUT):
                async for event in events:
                    if isinstance(event, StateReceived):
                        break
            first.signal(signal.SIGKILL)
            await first.wait()
            async with asyncio.timeout(TIMEOUT):
                async for event in events:
                    if isinstance(event, ConnectionLost):
                        assert event.code in (None, 1006)
                        break
            async with ServerProcess("--port", str(first.port)):
                seen: list[object] = []
                async with asyncio.timeout(TIMEOUT):
                    async for event in events:
                        seen.append(event)
                        if isinstance(event, StateReceived):
                            break
                assert any(isinstance(event, Connected) for event in seen)
                assert isinstance(seen[-1], StateReceived)
                assert seen[-1].snapshot.state is State.IDLE
            await client.close()


async def test_an_error_while_serving_one_client_touches_nobody_else(
    server: ProgressServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug hit by one request: that client gets internal_error and stays connected,
    the others notice nothing, the calculation is unharmed, the log has the traceback."""
    victim, _, _ = await join(server.url)
    bystander, _, _ = await join(server.url)
    fail_once(server)
    with caplog.at_level(logging.ERROR):
        await send_json(victim, {"action": "start", "request_id": "r1"})
        error = await recv_type(victim, "error")
    assert error["code"] == "internal_error"
    assert "injected fault" in caplog.text and "Traceback" in caplog.text
    assert "injected" not in error["message"]  # internals stay in the log

    await send_json(victim, {"action": "start", "request_id": "r2"})
    assert (await recv_type(victim, "ack"))["request_id"] == "r2"
    run = await states_until(bystander, "SUCCESS")
    assert [m["state"] for m in run] == ["STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"]
    await no_error(bystander)
    await victim.close()
    await bystander.close()


def fail_once(server: ProgressServer) -> None:
    """The backend's next start raises an unexpected exception (a bug), the ones after
    it work."""
    backend = server.backend
    start_calculation = backend.start_calculation
    calls = 0

    async def failing_once(by=None):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected fault")
        return await start_calculation(by)

    backend.start_calculation = failing_once  # type: ignore[method-assign]


async def test_an_error_in_an_http_action_is_a_500_and_nothing_more(
    server: ProgressServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The same bug hit by POST /start: 500 with internal_error and no internals, the
    traceback in the log, counted as an error, and the next POST /start is accepted."""
    fail_once(server)
    with caplog.at_level(logging.ERROR):
        status, _, error = await http_request(server.port, "POST", "/start")
    assert (status, error["type"], error["code"]) == (500, "error", "internal_error")
    assert "injected" not in error["message"]
    assert "injected fault" in caplog.text and "Traceback" in caplog.text
    found = samples(server.metrics.exposition().decode())
    assert value(found, "progress_errors_total", code="internal_error") == 1
    status, _, ack = await http_request(server.port, "POST", "/start")
    assert (status, ack["type"]) == (202, "ack")


async def no_error(ws) -> None:  # type: ignore[no-untyped-def]
    try:
        async with asyncio.timeout(STEP):
            while True:
                assert (await recv_json(ws))["type"] != "error"
    except TimeoutError:
        pass


async def test_closing_waits_for_an_action_before_the_store_closes() -> None:
    """SIGTERM while a client's start waits on a slow store: the client is told 1001 at
    once, and the start still finishes before the backend is closed, not after it."""
    backend = HeldBackend(step_seconds=STEP)
    server = ProgressServer(port=0, backend=backend)
    await server.start()
    ws, _, _ = await join(server.url)
    await send_json(ws, {"action": "start"})
    async with asyncio.timeout(TIMEOUT):
        while "start begins" not in backend.events:
            await asyncio.sleep(0.01)
    closing = asyncio.create_task(server.close())
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    assert ws.close_code == 1001
    assert not closing.done()  # the start is still in flight
    backend.release.set()
    await closing
    assert backend.events == ["start begins", "start done", "backend closed"]


async def waiting_for_its_connections(server: ProgressServer) -> None:
    """Until a closing server has stopped listening and waits for its connections."""
    async with asyncio.timeout(TIMEOUT):
        while server.websocket._all_closed is None:
            await asyncio.sleep(0)


async def test_closing_answers_an_http_request_in_flight() -> None:
    """SIGTERM while a POST /start waits on a slow store: the caller gets its 202."""
    backend = HeldBackend(step_seconds=STEP)
    server = ProgressServer(port=0, backend=backend)
    await server.start()
    posting = asyncio.create_task(http_request(server.port, "POST", "/start"))
    async with asyncio.timeout(TIMEOUT):
        while "start begins" not in backend.events:
            await asyncio.sleep(0.01)
    closing = asyncio.create_task(server.close())
    await waiting_for_its_connections(server)  # the store still busy
    backend.release.set()
    status, _, body = await posting
    await closing
    assert status == 202, body
    assert body["type"] == "ack"
    assert backend.events == ["start begins", "start done", "backend closed"]


async def test_a_handshake_under_way_at_shutdown_gets_503() -> None:
    """A client halfway through its handshake when the server closes is told why."""
    server = ProgressServer(port=0)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = HANDSHAKE.format(path="/progress", port=server.port).encode()
    writer.write(request[:20])
    await writer.drain()
    async with asyncio.timeout(TIMEOUT):
        while not server.connections:
            await asyncio.sleep(0.01)
    closing = asyncio.create_task(server.close())
    await waiting_for_its_connections(server)
    writer.write(request[20:])
    response = await asyncio.wait_for(reader.read(), TIMEOUT)
    await closing
    assert response.startswith(b"HTTP/1.1 503"), response
    assert b"\r\nRetry-After: 1\r\n" in response
    assert b"shutting down" in response
    writer.close()
