"""A bounded soak: 200 clients come, go, start and cancel at random against one server."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import TIME_FACTOR, TIMEOUT, ServerProcess, http_request

CLIENTS = 200
STAYING = 20  # connected from start to end; the rest come and go
#: How long the churn lasts: a load, not a timeout, so a slow machine does not stretch it,
#: but for the connections each round makes at least (where the clients' own reading takes
#: the CPU, a slow machine makes few in that time).
SECONDS = 4.0


class Round:
    """A round of churn: until its deadline, and until ``at_least`` sessions began."""

    def __init__(self, seconds: float, at_least: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + seconds
        self.at_least = at_least
        self.sessions = 0

    def over(self) -> bool:
        return self.sessions >= self.at_least and self.loop.time() >= self.deadline


class SoakClient:
    """Reads everything; remembers the seq numbers and the last state it saw."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seqs: list[int] = []
        self.last: dict[str, Any] | None = None

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message["type"] == "state":
                    if message != self.last:  # a status answer repeats the last state
                        self.seqs.append(message["seq"])
                    self.last = message
        except ConnectionClosed:
            pass


async def churn(url: str, rng: random.Random, round_: Round, seen: list[list[int]]) -> None:
    """One client slot: connect, act at random, leave (cleanly or not), again, until the
    round is over."""
    while not round_.over():
        round_.sessions += 1
        async with asyncio.timeout(TIMEOUT):
            ws = await connect(url, open_timeout=TIMEOUT)
        client = SoakClient(ws)
        reader = asyncio.create_task(client.read())
        for _ in range(rng.randint(0, 6)):
            if round_.over():
                break  # no tail of late actions
            action = rng.choice(["start", "cancel", "status", "start"])
            try:
                await ws.send(json.dumps({"action": action}))
            except ConnectionClosed:
                break
            await asyncio.sleep(rng.uniform(0.01, 0.3))
        if rng.random() < 0.2:
            ws.transport.abort()  # vanish without a close frame
        else:
            await ws.close()
        await reader
        seen.append(client.seqs)


async def test_soak_200_clients() -> None:
    """Afterwards: every client saw strictly increasing seq numbers, the ones still
    connected agree with the server, the log has no error, and memory came back down."""
    rng = random.Random(20261126)
    async with ServerProcess("--step-seconds", str(0.05 * TIME_FACTOR)) as server:
        process = psutil.Process(server.process.pid)  # type: ignore[union-attr]

        # A first, short round warms up the allocator; memory is measured after it.
        seen: list[list[int]] = []
        warm_up = Round(1.5, at_least=CLIENTS)
        await asyncio.gather(*(churn(server.url, rng, warm_up, seen) for _ in range(CLIENTS)))
        await quiet(server.port)
        rss_before = process.memory_info().rss

        staying = [SoakClient(await connect(server.url)) for _ in range(STAYING)]
        readers = [asyncio.create_task(client.read()) for client in staying]
        soak = Round(SECONDS, at_least=2 * (CLIENTS - STAYING))
        await asyncio.gather(
            *(churn(server.url, rng, soak, seen) for _ in range(CLIENTS - STAYING))
        )
        final = await quiet(server.port)
        async with asyncio.timeout(TIMEOUT):  # the last state is on its way to them
            while any(
                client.last is None or client.last["seq"] < final["seq"] for client in staying
            ):
                await asyncio.sleep(0.01)

        for client in staying:
            assert client.last == final
            await client.ws.close()
        await asyncio.gather(*readers)
        rss_after = process.memory_info().rss

        for seqs in [*seen, *(client.seqs for client in staying)]:
            assert all(a < b for a, b in itertools.pairwise(seqs)), seqs
        assert final["seq"] > 20, "the soak started and canceled too few calculations"
        assert len(seen) > 2 * CLIENTS

        server.signal(15)
        assert await server.wait() == 0
    errors = [line for line in server.lines if " ERROR " in line or "Traceback" in line]
    assert errors == []
    grown = (rss_after - rss_before) / 2**20
    # Not zero: the allocator keeps some freed memory (it levels off, measured over 8 rounds).
    assert grown < 20, f"the server grew by {grown:.1f} MiB over the soak"


async def quiet(port: int) -> dict[str, Any]:
    """Cancel whatever runs, then wait until the state is final; returns it."""
    await http_request(port, "POST", "/cancel")
    async with asyncio.timeout(TIMEOUT):
        while True:
            _, _, state = await http_request(port, "GET", "/state")
            if state["state"] in ("SUCCESS", "CANCELED", "IDLE"):
                return state  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)
