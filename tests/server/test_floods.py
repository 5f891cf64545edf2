"""Rate limits and capacity: one client cannot flood the others out, nor can too many."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from progress_server.server import ProgressServer
from tests.helpers import TIME_FACTOR, TIMEOUT, join, recv_json, recv_type, send_json

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
        for _ in range(30):
            await send_json(ws, {"action": "status"})
            replies.append(await recv_json(ws))
            await asyncio.sleep(1 / 30)
        kinds = {r.get("code", r["type"]) for r in replies}
        assert kinds == {"state", "rate_limited"}
        await send_json(ws, {"action": "status"})
        await asyncio.sleep(0.2)
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
