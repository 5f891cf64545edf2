"""Keepalive from one task: every client pinged each interval, the silent ones dropped.

(A client that answers no ping at all is dropped within interval + timeout: see
test_slow_clients.py and test_operations.py, which check the log and the metric too.)
"""

from __future__ import annotations

import asyncio
import json
import os
import struct

import pytest
from websockets.asyncio.client import connect

from progress_server.server import ProgressServer
from tests.helpers import TIME_FACTOR, TIMEOUT, HeldBackend
from tests.raw import RawClient

INTERVAL = 0.1 * TIME_FACTOR


def masked_pong(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x8A, 0x80 | len(payload)) + mask + masked


async def next_ping(client: RawClient) -> bytes:
    while True:
        opcode, payload = await client.frame()
        if opcode == 0x9:
            return payload


async def test_every_client_is_pinged_each_interval() -> None:
    """Each client gets a ping within an interval (and a tick); answered, another at
    the next interval, with a new payload."""
    # The pongs are the test's, sent when it gets to them: no drop while they are late.
    async with ProgressServer(port=0, ping_interval=INTERVAL, ping_timeout=TIMEOUT) as server:
        clients = await asyncio.gather(*(RawClient.connect(server.port) for _ in range(3)))
        loop = asyncio.get_running_loop()
        began = loop.time()
        pings = await asyncio.gather(*(next_ping(client) for client in clients))
        took = loop.time() - began
        bound = INTERVAL * 1.1 + 0.2 * TIME_FACTOR
        assert took <= bound, f"the first pings came {took:.3f} s after connecting, not {bound:g}"
        assert all(len(ping) == 4 for ping in pings)
        for client, ping in zip(clients, pings, strict=True):
            await loop.sock_sendall(client.sock, masked_pong(ping))
        later = await asyncio.gather(*(next_ping(client) for client in clients))
        assert all(new != old for new, old in zip(later, pings, strict=True))
        for client in clients:
            client.close()


async def test_one_frame_for_all_the_clients_of_a_sweep() -> None:
    """A sweep frames its ping once: every client it pings gets the same bytes."""
    async with ProgressServer(port=0, ping_interval=3600.0, ping_timeout=3600.0) as server:
        clients = await asyncio.gather(*(RawClient.connect(server.port) for _ in range(3)))
        assert server.keepalive.ping(asyncio.get_running_loop().time()) == 3
        pings = await asyncio.gather(*(next_ping(client) for client in clients))
        assert pings[0] == pings[1] == pings[2]
        for client in clients:
            client.close()


async def test_clients_that_answer_stay_for_many_intervals() -> None:
    """A websockets client answers every ping by itself: after ten intervals it is still
    connected, and the server still counts it."""
    async with ProgressServer(port=0, ping_interval=INTERVAL, ping_timeout=INTERVAL) as server:
        assert server.hub is not None
        async with connect(server.url, ping_interval=None) as client:
            await asyncio.sleep(10 * INTERVAL)
            await client.send('{"action": "status"}')
            async with asyncio.timeout(TIMEOUT):
                while '"type":"state"' not in str(await client.recv()).replace(" ", ""):
                    pass
            assert len(server.hub.clients) == 1
            assert not server.keepalive.waiting or all(
                connection in server.connections for connection in server.keepalive.waiting
            )


async def test_only_the_pings_payload_is_an_answer() -> None:
    """A client that never reads but sends pongs of its own (a heartbeat) did not read
    the ping: it is dropped like a silent one."""
    async with ProgressServer(port=0, ping_interval=INTERVAL, ping_timeout=INTERVAL) as server:
        assert server.hub is not None
        client = await RawClient.connect(server.port)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(TIMEOUT):
            while server.hub.clients:
                await loop.sock_sendall(client.sock, masked_pong(b"beat"))
                await asyncio.sleep(INTERVAL / 4)
        client.close()


async def test_pings_come_once_per_interval_however_short_the_timeout() -> None:
    """--ping-interval is the period even with a shorter --ping-timeout: a client that
    answers gets about one ping an interval, not one a timeout."""
    interval = 4 * INTERVAL
    async with ProgressServer(port=0, ping_interval=interval, ping_timeout=INTERVAL) as server:
        client = await RawClient.connect(server.port)
        loop = asyncio.get_running_loop()
        began, count = loop.time(), 0
        while loop.time() - began < 3 * interval:
            ping = await next_ping(client)
            count += 1
            await loop.sock_sendall(client.sock, masked_pong(ping))
        assert count <= 4, f"{count} pings in 3 intervals of {interval:g} s"
        client.close()


async def test_closing_the_server_stops_the_keepalive() -> None:
    server = ProgressServer(port=0, ping_interval=INTERVAL, ping_timeout=INTERVAL)
    await server.start()
    task = server.keepalive._task
    assert task is not None and not task.done()
    await server.close()
    await asyncio.sleep(0)
    assert task.cancelled() or task.done()
    assert server.keepalive.waiting == {}


async def test_a_client_waiting_on_a_slow_action_still_answers_pings() -> None:
    """While a client's start waits on a slow store, its later messages wait their turn,
    but its pongs are still read: it is not dropped for silence, and its replies come in
    the order it asked."""
    backend = HeldBackend()
    async with ProgressServer(
        port=0, ping_interval=INTERVAL, ping_timeout=INTERVAL, backend=backend
    ) as server:
        assert server.hub is not None
        async with connect(server.url, ping_interval=None) as client:
            async with asyncio.timeout(TIMEOUT):  # hello, state, history, count
                while json.loads(await client.recv())["type"] != "clients":
                    pass
            await client.send('{"action": "start", "request_id": "first"}')
            await client.send('{"action": "status"}')
            # Its pongs are read: three pings answered, past interval + timeout since the
            # first. Unread, none would be, and it would be dropped.
            (connection,) = server.connections
            pongs = [connection.last_pong]
            try:
                async with asyncio.timeout(TIMEOUT):
                    while len(pongs) <= 3:
                        await asyncio.sleep(INTERVAL / 4)
                        if connection.last_pong != pongs[-1]:
                            pongs.append(connection.last_pong)
            except TimeoutError:
                pytest.fail(f"{len(pongs) - 1} pongs read in {TIMEOUT:g} s while the start waited")
            assert len(server.hub.clients) == 1
            assert backend.events == ["start begins"]  # the start still waits
            backend.release.set()
            # The start's ack, then the status's state: not the other way round.
            async with asyncio.timeout(TIMEOUT):
                assert json.loads(await client.recv())["type"] == "ack"
                assert json.loads(await client.recv())["type"] == "state"
