"""The UI-free client against real servers: events, actions, reconnecting."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, TypeVar

import pytest

from progress_server.calculation import State
from progress_server.server import ProgressServer
from progress_tui.client import (
    ActionAccepted,
    ClientEvent,
    ClientsChanged,
    Closed,
    Connected,
    Connecting,
    ConnectionLost,
    NotConnected,
    ProgressClient,
    ServerError,
    StateReceived,
    Waiting,
)
from progress_tui.reconnect import ReconnectPolicy
from tests.helpers import STEP, TIME_FACTOR, TIMEOUT, ServerProcess, free_port

E = TypeVar("E")

#: A short backoff cap, so that the tests reconnect quickly.
CAP = 0.5 * TIME_FACTOR


async def next_event(events: AsyncGenerator[ClientEvent, None], kind: type[E]) -> E:
    """The next event of one kind, skipping others; fails the test if none comes."""
    async with asyncio.timeout(TIMEOUT):
        async for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the events ended before a {kind.__name__}")


def client_for(url: str, **kwargs: Any) -> ProgressClient:
    return ProgressClient(url, policy=ReconnectPolicy(initial=0.05, cap=CAP), **kwargs)


async def test_connect_yields_hello_state_and_count(server: ProgressServer) -> None:
    """Connecting, Connected, the current state, then the clients count."""
    client = client_for(server.url)
    async with aclosing(client.events()) as events:
        assert await anext(events) == Connecting(server.url, 1)
        connected = await anext(events)
        assert isinstance(connected, Connected)
        assert connected.server.startswith("progress-server/")
        state = await anext(events)
        assert isinstance(state, StateReceived)
        assert state.snapshot.state is State.IDLE
        assert await anext(events) == ClientsChanged(1)
        assert client.snapshot == state.snapshot
        assert client.clients == 1


async def test_send_gets_an_ack_with_its_request_id(server: ProgressServer) -> None:
    """start is acked with the request id send() returned; STARTING follows."""
    client = client_for(server.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        request_id = await client.send("start")
        accepted = await next_event(events, ActionAccepted)
        assert accepted.ack.request_id == request_id
        starting = await next_event(events, StateReceived)
        assert starting.snapshot.state is State.STARTING
        assert starting.snapshot.calculation_id == accepted.ack.calculation_id


async def test_refusals_come_back_as_server_errors(server: ProgressServer) -> None:
    """cancel while IDLE: a ServerError with the server's sentence and the request id."""
    client = client_for(server.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        request_id = await client.send("cancel")
        refused = await next_event(events, ServerError)
        assert refused.error.code == "not_running"
        assert refused.error.request_id == request_id
        assert "no running calculation" in refused.error.message


async def test_send_while_disconnected_raises() -> None:
    """Nothing can be sent before the connection is up."""
    client = client_for(f"ws://127.0.0.1:{free_port()}/progress")
    with pytest.raises(NotConnected):
        await client.send("start")


async def test_rtt_is_measured_soon_after_connecting(server: ProgressServer) -> None:
    """The round-trip time is known well before the first keepalive ping."""
    client = client_for(server.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        async with asyncio.timeout(TIMEOUT):
            while client.rtt is None:
                await asyncio.sleep(0.01)
        assert 0 < client.rtt < 1


async def test_reconnects_and_resyncs_after_a_server_restart() -> None:
    """Server gone: ConnectionLost, Waiting with attempts; back: Connected and its state."""
    port = free_port()
    first = ProgressServer(port=port, step_seconds=STEP)
    await first.start()
    client = client_for(first.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        await client.send("start")
        await next_event(events, ActionAccepted)
        await first.close()

        lost = await next_event(events, ConnectionLost)
        assert lost.reason == "the server is going away (1001)"
        assert lost.code == 1001
        waits = [await next_event(events, Waiting) for _ in range(2)]
        assert [w.attempt for w in waits] == [1, 2]
        assert waits[1].error == "connection refused"
        assert all(0 <= w.delay <= CAP for w in waits)

        async with ProgressServer(port=port, step_seconds=STEP):
            loop = asyncio.get_running_loop()
            back_at = loop.time()
            await next_event(events, Connected)
            assert loop.time() - back_at <= CAP + TIMEOUT / 5
            resync = await next_event(events, StateReceived)
            assert resync.snapshot.state is State.IDLE  # the new server's own state
        await client.close()


async def test_a_dead_server_is_detected_by_keepalive() -> None:
    """A server that stops answering (SIGSTOP: no close frame) is noticed by the pings."""
    async with ServerProcess() as server:
        client = client_for(server.url, ping_interval=0.2, ping_timeout=0.2, reconnect=False)
        async with aclosing(client.events()) as events:
            await next_event(events, StateReceived)
            server.signal(signal.SIGSTOP)
            try:
                lost = await next_event(events, ConnectionLost)
                closed = await next_event(events, Closed)
            finally:
                server.signal(signal.SIGCONT)
        assert lost.reason == "the server stopped answering pings"
        assert closed.reason == lost.reason


async def test_without_reconnect_the_first_failure_ends_the_events() -> None:
    """reconnect=False: a refused connection ends with Closed and the reason."""
    client = client_for(f"ws://127.0.0.1:{free_port()}/progress", reconnect=False)
    async with aclosing(client.events()) as events:
        closed = await next_event(events, Closed)
    assert closed.reason == "connection refused"


async def test_a_wrong_path_is_explained() -> None:
    """A handshake refused by the server says the HTTP status."""
    async with ProgressServer(port=0, step_seconds=STEP) as server:
        client = client_for(server.url.replace("/progress", "/nope"), reconnect=False)
        async with aclosing(client.events()) as events:
            closed = await next_event(events, Closed)
    assert closed.reason == "the server refused the connection (HTTP 404)"


async def test_reconnect_now_skips_the_wait() -> None:
    """While waiting out a long backoff, reconnect_now() tries again at once."""
    client = ProgressClient(
        f"ws://127.0.0.1:{free_port()}/progress",
        policy=ReconnectPolicy(initial=100, cap=100, random=lambda: 1.0),
    )
    async with aclosing(client.events()) as events:
        await next_event(events, Waiting)
        client.reconnect_now()
        assert (await next_event(events, Connecting)).attempt == 2


async def test_close_ends_the_events_with_code_1000(server: ProgressServer) -> None:
    """close() closes the WebSocket cleanly and the events end with Closed."""
    client = client_for(server.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        assert server.hub is not None
        (connection,) = server.hub.clients
        await client.close()
        assert await next_event(events, Closed) == Closed("closed")
    await connection.wait_closed()
    assert connection.close_code == 1000


async def test_the_token_lets_the_client_in() -> None:
    """With the server's token the client connects; without, it stops and says why."""
    async with ProgressServer(port=0, token="t0ken") as server:
        client = client_for(server.url, token="t0ken")
        async with aclosing(client.events()) as events:
            await next_event(events, StateReceived)
        client = client_for(server.url)
        async with aclosing(client.events()) as events:
            closed = await next_event(events, Closed)
        assert closed.reason == (
            "the server needs a token (HTTP 401): use --token or PROGRESS_TOKEN"
        )
        client = client_for(server.url, token="wrong")
        async with aclosing(client.events()) as events:
            events_seen = []
            async with asyncio.timeout(TIMEOUT):
                async for event in events:
                    events_seen.append(event)
        # Refused for good: one attempt, no backoff loop.
        assert [type(e) for e in events_seen] == [Connecting, Closed]
        assert events_seen[-1] == Closed("the server refused the token (HTTP 401)")
