"""Slow and dead clients: bounded buffers, conflation, and nobody else delayed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest

from progress_protocol.messages import Ack
from progress_server.server import ProgressServer
from progress_server.transport.connection import CLOSE_TIMEOUT
from tests.flooders import masked_ping
from tests.helpers import TIME_FACTOR, TIMEOUT, join, recv_type
from tests.raw import RawClient

LIMIT = 4096
RUNS = 50


async def run_calculations(server: ProgressServer, count: int) -> None:
    """count whole calculations, one after another, through the server's own API."""
    assert server.hub is not None
    for _ in range(count):
        ack = await server.service.perform("start")
        assert isinstance(ack, Ack), ack
        async with asyncio.timeout(TIMEOUT):
            while not (
                server.hub.snapshot.calculation_id == ack.calculation_id
                and server.hub.snapshot.state.is_final
            ):
                await asyncio.sleep(0.001)


def squeeze(server: ProgressServer) -> None:
    """Give every server-side socket a small kernel send buffer, like a congested path,
    so that what a client does not read piles up in the server's own buffer at once."""
    assert server.hub is not None
    for connection in server.hub.clients:
        sock = connection.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


async def test_a_client_that_stops_reading_is_skipped_then_caught_up() -> None:
    """50 runs while one client reads nothing: its buffer stays bounded, the others get
    every state in order, and once it reads again it gets the latest state."""
    async with ProgressServer(
        port=0, step_seconds=0.002, send_buffer_limit=LIMIT, stuck_timeout=60
    ) as server:
        assert server.hub is not None
        slow = await RawClient.connect(server.port, receive_buffer=1024)
        reader, _, _ = await join(server.url)
        squeeze(server)
        slow_connection = next(
            c for c in server.hub.clients if c.remote_address[1] == slow.sock.getsockname()[1]
        )

        largest = 0

        def watch(change: object) -> None:
            nonlocal largest
            largest = max(largest, slow_connection.transport.get_write_buffer_size())

        server.backend.subscribe(watch)
        received: list[dict] = []
        reading = asyncio.create_task(collect(reader, received, RUNS * 4))
        await run_calculations(server, RUNS)
        await asyncio.wait_for(reading, TIMEOUT)

        # The reader got every one of the 200 states, in order.
        assert [m["seq"] for m in received] == list(range(1, RUNS * 4 + 1))
        # The slow one was skipped rather than buffered without bound.
        # At most one frame past the limit: a state, or the history after a final state.
        frame = max(len(server.hub.state_text), len(server.hub.history_text)) + 10
        assert largest <= LIMIT + frame, f"{largest} bytes queued for a client that reads nothing"
        assert slow_connection in server.hub.lagging

        # It reads again: it drains, then gets the latest state, not the 200 it missed.
        latest = server.hub.snapshot.seq
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await slow.message()
                if message.get("type") == "state" and message["seq"] == latest:
                    break
        assert slow_connection not in server.hub.lagging
        slow.close()
        await reader.close()


async def collect(ws, into: list, count: int) -> None:  # type: ignore[no-untyped-def]
    while len(into) < count:
        into.append(await recv_type(ws, "state"))


async def test_a_client_stuck_past_the_timeout_is_disconnected() -> None:
    """A client over the buffer limit for longer than stuck_timeout is closed; the count
    comes down; the others are not affected."""
    stuck_timeout = 0.3 * TIME_FACTOR
    async with ProgressServer(
        port=0, step_seconds=0.002, send_buffer_limit=LIMIT, stuck_timeout=stuck_timeout
    ) as server:
        assert server.hub is not None
        watcher, _, _ = await join(server.url)
        stuck = await RawClient.connect(server.port, receive_buffer=1024)
        assert (await recv_type(watcher, "clients"))["count"] == 1
        assert (await recv_type(watcher, "clients"))["count"] == 2
        squeeze(server)
        running = asyncio.create_task(run_calculations(server, RUNS))
        async with asyncio.timeout(TIMEOUT):
            while (await recv_type(watcher, "clients"))["count"] != 1:
                pass
        await running
        assert len(server.hub.clients) == 1
        assert not server.hub.lagging
        stuck.close()
        await watcher.close()


async def test_a_dead_peer_leaves_within_ping_interval_plus_timeout() -> None:
    """A client that answers no ping is dropped after ping_interval + ping_timeout, and
    the close timeout (the server still waits that long for the peer to close TCP)."""
    interval = timeout = 0.2 * TIME_FACTOR
    async with ProgressServer(port=0, ping_interval=interval, ping_timeout=timeout) as server:
        assert server.hub is not None
        watcher, _, _ = await join(server.url)
        silent = await RawClient.connect(server.port)  # never reads, never pongs
        assert (await recv_type(watcher, "clients"))["count"] == 1
        assert (await recv_type(watcher, "clients"))["count"] == 2
        loop = asyncio.get_running_loop()
        joined = loop.time()
        message = await recv_type(watcher, "clients", timeout=interval + timeout + TIMEOUT)
        assert message["count"] == 1
        bound = interval + timeout + CLOSE_TIMEOUT
        took = loop.time() - joined
        assert took <= bound + 0.3 * TIME_FACTOR, f"dropped {took:.2f} s after joining"
        silent.close()
        await watcher.close()


async def test_a_client_over_the_send_buffer_cap_is_dropped_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pongs it never reads pile up for a client whose pings the budget allows: past the
    cap it is dropped at once, not after the stuck timeout, and the others stay."""
    cap = 64 * 1024
    async with ProgressServer(
        port=0, rate_limit=100_000, rate_burst=100_000, send_buffer_cap=cap, stuck_timeout=60
    ) as server:
        assert server.hub is not None
        watcher, _, _ = await join(server.url)
        greedy = await RawClient.connect(server.port, receive_buffer=1024)
        assert (await recv_type(watcher, "clients"))["count"] == 1
        assert (await recv_type(watcher, "clients"))["count"] == 2
        squeeze(server)
        ping = masked_ping(b"x" * 125)
        loop = asyncio.get_running_loop()
        with caplog.at_level(logging.WARNING):
            with contextlib.suppress(OSError):  # the server cuts it in the middle
                for _ in range(20):
                    await loop.sock_sendall(greedy.sock, ping * 100)  # 13 KiB of pongs owed
            message = await recv_type(watcher, "clients")
        assert message["count"] == 1
        assert f"over the cap of {cap}" in caplog.text
        greedy.close()
        await watcher.close()


async def test_a_peer_that_half_closes_with_data_unread_is_cut() -> None:
    """A client stops reading, then sends FIN without a close frame: the server cannot
    flush what it queued for it, so closing would wait for ever. It is cut after the
    close timeout, and leaves the count."""
    async with ProgressServer(
        port=0, step_seconds=0.002, send_buffer_limit=LIMIT, stuck_timeout=60
    ) as server:
        assert server.hub is not None
        deaf = await RawClient.connect(server.port, receive_buffer=1024)
        squeeze(server)
        (connection,) = server.hub.clients
        async with asyncio.timeout(TIMEOUT):
            while connection.transport.get_write_buffer_size() == 0:
                await run_calculations(server, 1)
        loop = asyncio.get_running_loop()
        deaf.sock.shutdown(socket.SHUT_WR)
        sent = loop.time()
        async with asyncio.timeout(TIMEOUT):
            while server.hub.clients:
                await asyncio.sleep(0.01)
        took = loop.time() - sent
        assert took < CLOSE_TIMEOUT + 0.5 * TIME_FACTOR, f"cut {took:.2f} s after its FIN"
        deaf.close()
