"""Rate limits and capacity: one client cannot flood the others out, nor can too many."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from progress_server.server import ProgressServer
from tests.helpers import (
    TIME_FACTOR,
    TIMEOUT,
    ServerProcess,
    join,
    recv_json,
    recv_type,
    send_json,
)
from tests.raw import RawClient

T = TypeVar("T")

STEP = 0.1 * TIME_FACTOR


async def test_a_flooder_gets_rate_limited_then_closed_with_1008() -> None:
    """Past the burst: rate_limited errors, messages dropped; far past: close 1008."""
    async with ProgressServer(port=0, step_seconds=STEP) as server:
        flooder, _, _ = await join(server.url)
        await recv_type(flooder, "clients")
        for _ in range(400):
            await send_json(flooder, {"action": "status"})
        replies = []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                while True:
                    replies.append(await recv_json(flooder))
        assert flooder.close_code == 1008
        kinds = [r["type"] if r["type"] != "error" else r["code"] for r in replies]
        kinds = [kind for kind in kinds if kind != "clients"]  # counts come when they come
        # The burst of 40, then what trickled in at 20/s while the flood was read.
        assert kinds[:40] == ["state"] * 40
        assert kinds.count("state") < kinds.count("rate_limited")
        assert kinds.count("rate_limited") >= 90
        assert set(kinds) == {"state", "rate_limited"}
        limited = next(r for r in replies if r["type"] == "error")
        assert "Too many messages" in limited["message"]
        # Dropped means dropped: none of the 400 status requests started anything.
        assert server.hub is not None and server.hub.snapshot.seq == 0


async def test_others_get_every_state_on_time_while_one_floods() -> None:
    """A calculation runs while a client floods: the watcher sees every state promptly."""
    async with ProgressServer(port=0, step_seconds=STEP) as server:
        watcher, _, _ = await join(server.url)
        flooder, _, _ = await join(server.url)

        async def flood() -> None:
            try:
                while True:
                    await flooder.send('{"action": "start"}')
                    await asyncio.sleep(0)
            except ConnectionClosed:
                pass

        flooding = asyncio.create_task(flood())
        arrivals = []
        async with asyncio.timeout(TIMEOUT):
            while not arrivals or arrivals[-1][0]["state"] not in ("SUCCESS",):
                message = await recv_type(watcher, "state")
                arrivals.append((message, time.time()))
        flooding.cancel()
        states = [m["state"] for m, _ in arrivals]
        assert states == ["STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"]
        assert [m["seq"] for m, _ in arrivals] == [1, 2, 3, 4]
        late = [received - m["changed_at"] for m, received in arrivals[1:]]
        # A server stalled by the flood would deliver them steps late; jitter is allowed.
        assert max(late) < 2 * STEP, f"states arrived late: {late}"
        await watcher.close()
        flooder.transport.abort()  # it never read its replies: no closing handshake


async def test_a_client_just_over_the_limit_is_slowed_not_closed() -> None:
    """30 messages/s against a 20/s limit: some are dropped, the connection stays."""
    async with ProgressServer(port=0, rate_limit=20, rate_burst=5) as server:
        ws, _, _ = await join(server.url)
        await recv_type(ws, "clients")
        replies = []
        loop = asyncio.get_running_loop()
        began = loop.time()
        for number in range(30):
            # On a schedule, not after a sleep each: a late wake-up does not slow the pace.
            await asyncio.sleep(max(0.0, began + number / 30 - loop.time()))
            await send_json(ws, {"action": "status"})
            replies.append(await recv_json(ws))
        took = loop.time() - began
        kinds = [r.get("code", r["type"]) for r in replies]
        assert set(kinds) == {"state", "rate_limited"}, f"in {took:.2f} s: {kinds}"
        await send_json(ws, {"action": "status"})
        assert (await recv_json(ws))["type"] in ("state", "error")
        await ws.close()


async def test_the_client_after_max_clients_gets_503() -> None:
    """--max-clients reached: the next handshake gets 503 saying so; after one leaves, room."""
    async with ProgressServer(port=0, max_clients=3) as server:
        clients = [(await join(server.url))[0] for _ in range(3)]
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.url, open_timeout=TIMEOUT)
        response = refused.value.response
        assert response.status_code == 503
        assert b"The server is full (3 clients)" in response.body
        await clients[0].close()
        assert server.hub is not None
        async with asyncio.timeout(TIMEOUT):
            while len(server.hub.clients) > 2:
                await asyncio.sleep(0.01)
        again, _, _ = await join(server.url)
        assert (await recv_type(again, "clients"))["count"] == 3
        for ws in [again, *clients[1:]]:
            await ws.close()


async def test_a_client_joining_as_another_leaves_is_told_the_count() -> None:
    """One leaves and one joins within the count interval: the count is back where it was,
    so the others need not hear it, but the one who joined must (it was told nothing)."""
    async with ProgressServer(port=0) as server:
        clients = [(await join(server.url))[0] for _ in range(3)]
        for ws in clients:
            assert (await recv_type(ws, "clients"))["count"] >= 1
        assert server.hub is not None
        server.hub.count_interval = TIMEOUT / 4  # the join surely comes within it
        await clients[0].close()
        async with asyncio.timeout(TIMEOUT):
            while len(server.hub.clients) > 2:
                await asyncio.sleep(0.01)
        again, _, _ = await join(server.url)
        assert (await recv_type(again, "clients"))["count"] == 3
        for ws in [again, *clients[1:]]:
            await ws.close()


async def flood(kind: str, port: int, connections: int, seconds: float, *flags: str) -> Any:
    """Run a flood from tests/flooders.py in its own process; returns its tally."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.flooders",
        kind,
        str(port),
        str(connections),
        str(seconds),
        *flags,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), seconds + TIMEOUT)
    return json.loads(stdout)


async def peak_rss_during(pid: int, work: Awaitable[T]) -> tuple[int, T]:
    """The highest resident memory of process `pid` while `work` runs, sampled often."""
    process = psutil.Process(pid)
    peak = process.memory_info().rss
    task = asyncio.ensure_future(work)
    while not task.done():
        peak = max(peak, process.memory_info().rss)
        await asyncio.wait([task], timeout=0.02)
    return peak, task.result()


#: How long each flood lasts: a load, not a timeout, so not stretched on a slow machine.
FLOOD_SECONDS = 2.5
MiB = 1024 * 1024


async def test_a_ping_flood_that_never_reads_is_cut_and_costs_little_memory() -> None:
    """25 connections send pings as fast as they can and never read: each is closed
    for flooding (or dropped over the send buffer cap), and the server grows by less
    than 64 MiB, however long it lasts."""
    async with ServerProcess() as server:
        assert server.process is not None
        watcher, _, _ = await join(server.url)
        before = psutil.Process(server.process.pid).memory_info().rss
        peak, tally = await peak_rss_during(
            server.process.pid, flood("pings", server.port, 25, FLOOD_SECONDS)
        )
        # Every connection was cut, but maybe the last of each flooder, cut short by the end.
        assert tally.get("cut", 0) >= max(25, tally["connections"] - 25), tally
        assert peak - before < 64 * MiB, f"grew by {(peak - before) / MiB:.0f} MiB"
        await send_json(watcher, {"action": "status"})
        assert (await recv_type(watcher, "state"))["state"] == "IDLE"
        await watcher.close()
        log = "\n".join(server.lines)
        assert "closed for flooding (pings, pongs or fragments)" in log
        assert "Traceback" not in log


async def test_a_ping_flood_that_reads_ends_in_1008_and_delays_nobody() -> None:
    """12 connections flood pings and read the pongs: each gets close 1008 like a message
    flooder; meanwhile a legitimate client's status round trip stays under 100 ms."""
    async with ServerProcess() as server:
        client, _, _ = await join(server.url)
        round_trips: list[float] = []

        async def measure() -> None:
            loop = asyncio.get_running_loop()
            while True:
                sent = loop.time()
                await send_json(client, {"action": "status"})
                await recv_type(client, "state")
                round_trips.append(loop.time() - sent)
                await asyncio.sleep(0.05)

        measuring = asyncio.create_task(measure())
        tally = await flood("pings", server.port, 12, FLOOD_SECONDS, "--read")
        measuring.cancel()
        assert tally.get("closed 1008", 0) >= 12, tally
        assert len(round_trips) > 10
        assert max(round_trips) < 0.1 * TIME_FACTOR, f"slowest: {max(round_trips):.3f} s"
        await client.close()


def masked_frame(opcode: int, payload: bytes, *, fin: bool) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + masked


async def test_a_flood_of_fragments_is_charged_like_messages(server: ProgressServer) -> None:
    """One message in thousands of empty continuation frames costs one token a frame,
    not one a message: the sender is closed with 1008, and nobody else waits."""
    flooder = await RawClient.connect(server.port)
    loop = asyncio.get_running_loop()
    fragments = masked_frame(0x1, b'{"action":', fin=False)
    fragments += masked_frame(0x0, b"", fin=False) * 4000
    fragments += masked_frame(0x0, b'"status"}', fin=True)
    with contextlib.suppress(OSError):
        for _ in range(20):
            await loop.sock_sendall(flooder.sock, fragments)
    codes = []
    with contextlib.suppress(EOFError, OSError, TimeoutError):
        while True:
            opcode, payload = await flooder.frame()
            if opcode == 0x8:
                codes.append(int.from_bytes(payload[:2], "big"))
                break
    assert codes == [1008]
    client, _, _ = await join(server.url)
    started = loop.time()
    await send_json(client, {"action": "status"})
    await recv_type(client, "state")
    took = loop.time() - started
    assert took < 0.1 * TIME_FACTOR, f"a status round trip took {took:.3f} s"
    flooder.close()
    await client.close()
