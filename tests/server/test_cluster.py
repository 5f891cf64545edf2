"""Several progress-server instances sharing one calculation through a real Redis."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from progress_server.backends.redis import RedisBackend
from progress_server.server import ProgressServer
from tests.helpers import (
    TIMEOUT,
    ServerProcess,
    http_request,
    join,
    recv_json,
    recv_type,
    send_json,
)
from tests.redis_server import RedisServer

#: Short steps: the cluster's tests aim actions at deadlines, and a run is three steps.
STEP = 0.03


async def instance(url: str, prefix: str, **overrides: Any) -> ProgressServer:
    backend = RedisBackend(url, prefix=prefix, step_seconds=overrides.pop("step", STEP))
    server = ProgressServer(port=0, backend=backend, rate_limit=1000, **overrides)
    await server.start()
    return server


@pytest.fixture
async def cluster(redis_url: str, redis_prefix: str) -> AsyncIterator[list[ProgressServer]]:
    """Three instances on one Redis."""
    servers = [await instance(redis_url, redis_prefix) for _ in range(3)]
    yield servers
    for server in servers:
        await server.close()


class Watcher:
    """A client that reads everything and keeps the states it saw."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.states: list[dict[str, Any]] = []
        self.received: list[float] = []  # wall-clock time each state arrived
        self.counts: list[int] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for data in self.ws:
            message = json.loads(data)
            if message["type"] == "state":
                self.states.append(message)
                self.received.append(time.time())
            elif message["type"] == "clients":
                self.counts.append(message["count"])

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def test_one_calculation_across_instances(cluster: list[ProgressServer]) -> None:
    """A start on one instance and a cancel on another reach the clients of all three,
    identical; the clients count is the total over the instances."""
    watchers = []
    for server in cluster:
        ws, _, _ = await join(server.url)
        watchers.append(Watcher(ws))
    a, b, c = cluster
    await http_request(a.port, "POST", "/start", headers={"X-Progress-Name": "alice"})
    async with asyncio.timeout(TIMEOUT):
        while not all(w.states and w.states[-1]["state"] == "STARTING" for w in watchers):
            await asyncio.sleep(0.01)
    await http_request(b.port, "POST", "/cancel", headers={"X-Progress-Name": "bob"})
    async with asyncio.timeout(TIMEOUT):
        while not all(w.states and w.states[-1]["state"] == "CANCELED" for w in watchers):
            await asyncio.sleep(0.01)
        while not all(w.counts and w.counts[-1] == 3 for w in watchers):
            await asyncio.sleep(0.01)
    first = watchers[0].states
    assert all(w.states == first for w in watchers)
    assert first[-1]["by"]["name"] == "bob" and first[-1]["started_by"]["name"] == "alice"
    _, _, state = await http_request(c.port, "GET", "/state")
    assert state == first[-1]
    for watcher in watchers:
        await watcher.close()


async def test_two_starts_at_once_exactly_one_wins(cluster: list[ProgressServer]) -> None:
    """Starts on every instance at the same moment: one ack, the others already_running."""
    clients = [(await join(server.url))[0] for server in cluster]
    for ws in clients:
        await send_json(ws, {"action": "start", "request_id": "go"})
    answers = [await recv_type_any(ws, ("ack", "error")) for ws in clients]
    kinds = sorted(answer.get("code", answer["type"]) for answer in answers)
    assert kinds == ["ack", "already_running", "already_running"]
    for ws in clients:
        await ws.close()


async def recv_type_any(ws: ClientConnection, kinds: tuple[str, ...]) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = await recv_json(ws)
            if message["type"] in kinds:
                return message


async def test_random_actions_from_random_instances_agree(
    cluster: list[ProgressServer],
) -> None:
    """Hundreds of starts and cancels from random instances, some aimed at deadlines: for
    every seq every client saw the same content, each client's seq strictly increases,
    and all end on the state Redis holds."""
    rng = random.Random(10)
    watchers = [Watcher((await join(server.url))[0]) for server in cluster for _ in range(2)]
    # They read what they are sent, like any client: one that never read would hold up
    # its own closing handshake.
    actors = [Watcher((await join(server.url))[0]) for server in cluster]
    for _ in range(200):
        actor = rng.choice(actors)
        await send_json(actor.ws, {"action": rng.choice(["start", "cancel"])})
        await asyncio.sleep(rng.choice([0, 0.001, STEP / 2, STEP]))
    await asyncio.sleep(4 * STEP)  # the last calculation ends, if one runs
    _, _, final = await http_request(cluster[0].port, "GET", "/state")
    async with asyncio.timeout(TIMEOUT):
        while not all(w.states and w.states[-1]["seq"] == final["seq"] for w in watchers):
            await asyncio.sleep(0.01)
    by_seq: dict[int, dict[str, Any]] = {}
    for watcher in watchers:
        seqs = [state["seq"] for state in watcher.states]
        assert seqs == sorted(set(seqs)), "a client saw seq go backwards or repeat"
        for state in watcher.states:
            assert by_seq.setdefault(state["seq"], state) == state, "one seq, two contents"
        assert watcher.states[-1] == final
    assert final["seq"] > 50
    backend = cluster[0].backend
    assert isinstance(backend, RedisBackend) and backend.record is not None
    assert backend.record.seq == final["seq"]
    for watcher in [*actors, *watchers]:
        await watcher.close()


async def test_a_run_survives_the_loss_of_the_instance_that_drove_it(
    redis_url: str, redis_prefix: str
) -> None:
    """SIGKILL the instance the run was started on, in each running state: another one
    drives the rest, on time, and its clients see every state once."""
    step = 0.3
    args = ("--redis-url", redis_url, "--redis-prefix", redis_prefix, "--step-seconds", str(step))
    for killed_in in ("STARTING", "IN_PROGRESS", "ALMOST_DONE"):
        async with AsyncExitStack() as stack:
            first = await stack.enter_async_context(ServerProcess(*args))
            second = await stack.enter_async_context(ServerProcess(*args))
            watcher = Watcher((await join(second.url))[0])
            _, _, ack = await http_request(first.port, "POST", "/start")
            async with asyncio.timeout(TIMEOUT):
                while not (watcher.states and watcher.states[-1]["state"] == killed_in):
                    await asyncio.sleep(0.005)
            first.signal(signal.SIGKILL)
            async with asyncio.timeout(TIMEOUT):
                while watcher.states[-1]["state"] != "SUCCESS":
                    await asyncio.sleep(0.005)
            run = [s for s in watcher.states if s["calculation_id"] == ack["calculation_id"]]
            assert [s["state"] for s in run] == [
                "STARTING",
                "IN_PROGRESS",
                "ALMOST_DONE",
                "SUCCESS",
            ]
            assert run[-1]["changed_at"] == pytest.approx(run[0]["started_at"] + 3 * step)
            await watcher.close()


@pytest.mark.parametrize("keep_data", [False, True], ids=["empty", "with-its-data"])
async def test_redis_lost_and_back(
    redis_prefix: str, caplog: pytest.LogCaptureFixture, keep_data: bool
) -> None:
    """Redis stops: clients keep their state, actions get `unavailable` (HTTP 503),
    /readyz is 503 and says why, /healthz (liveness) stays 200 and says it too; Redis
    comes back, empty or with its data: seq never goes backwards (an empty Redis gets
    the last state the instance knew), and actions work again."""
    async with RedisServer(keep_data=keep_data) as redis:
        server = await instance(redis.url, redis_prefix)
        try:
            ws, _, _ = await join(server.url)
            await send_json(ws, {"action": "start"})
            await send_json(ws, {"action": "cancel"})
            canceled = await recv_type_state(ws, "CANCELED")
            await redis.stop(kill=not keep_data)  # SIGTERM saves the data
            await send_json(ws, {"action": "start", "request_id": "r"})
            error = await recv_type(ws, "error")
            assert error["code"] == "unavailable" and "unreachable" in error["message"]
            status, _, body = await http_request(server.port, "POST", "/start")
            assert (status, body["code"]) == (503, "unavailable")
            status, _, body = await http_request(server.port, "GET", "/readyz")
            assert status == 503 and "unreachable" in body["reason"]
            status, _, body = await http_request(server.port, "GET", "/healthz")
            assert status == 200 and "unreachable" in body["backend"]
            _, _, state = await http_request(server.port, "GET", "/state")
            assert state == canceled  # the last known state, still served

            await redis.start()
            async with asyncio.timeout(TIMEOUT):
                while (await http_request(server.port, "GET", "/readyz"))[0] != 200:
                    await asyncio.sleep(0.05)
            await send_json(ws, {"action": "start"})
            started = await recv_type_state(ws, "STARTING")
            assert started["seq"] == canceled["seq"] + 1
            await ws.close()
        finally:
            await server.close()
    # The outage and the recovery are logged once each, however many requests failed.
    assert caplog.text.count("is unreachable:") == 1
    assert caplog.text.count("is reachable again") == 1
    assert ("restored the last state known here" in caplog.text) is not keep_data


async def recv_type_state(ws: ClientConnection, state: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = await recv_type(ws, "state")
            if message["state"] == state:
                return message


async def test_unreachable_at_startup_is_one_line_and_status_1() -> None:
    """No Redis there: one sentence, exit status 1, no traceback."""
    server = ServerProcess("--redis-url", "redis://127.0.0.1:1/0")
    with pytest.raises(RuntimeError, match="server exited"):
        await server.start()
    code = await server.wait()
    assert code == 1
    errors = [line for line in server.lines if "progress-server:" in line]
    assert errors == [
        "progress-server: cannot reach Redis at redis://127.0.0.1:1/0: "
        + errors[0].split(": ", 2)[2]
    ]
    assert "Traceback" not in "\n".join(server.lines)


async def test_a_redis_outage_mid_run_loses_no_state_of_this_instance(redis_prefix: str) -> None:
    """Redis goes away mid-run and comes back empty: the run carries on from the state
    the instance knew, and its clients get every state, none skipped, as soon as Redis
    answers again."""
    step = 0.2
    async with RedisServer() as redis:
        server = await instance(redis.url, redis_prefix, step=step)
        try:
            watcher = Watcher((await join(server.url))[0])
            await http_request(server.port, "POST", "/start")
            async with asyncio.timeout(TIMEOUT):
                while not (watcher.states and watcher.states[-1]["state"] == "STARTING"):
                    await asyncio.sleep(0.005)
            await redis.stop(kill=True)
            await asyncio.sleep(2 * step)  # IN_PROGRESS comes due while Redis is away
            await redis.start()
            async with asyncio.timeout(TIMEOUT):
                while watcher.states[-1]["state"] != "SUCCESS":
                    await asyncio.sleep(0.005)
            states = [s["state"] for s in watcher.states]
            assert states == ["STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"]
            seqs = [s["seq"] for s in watcher.states]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            await watcher.close()
        finally:
            await server.close()
