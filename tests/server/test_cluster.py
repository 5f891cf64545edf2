"""Several progress-server instances sharing one calculation through a real Redis."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from progress_server.backends.redis import RedisBackend
from progress_server.server import ProgressServer
from tests.helpers import (
    TIME_FACTOR,
    TIMEOUT,
    ServerProcess,
    Watcher,
    http_request,
    join,
    recv_json,
    recv_type,
    send_json,
)
from tests.redis_server import RedisServer

#: Short steps, for the test that aims actions at deadlines (a run is three steps).
STEP = 0.03
#: A step no test waits for: a state lasts until the test has acted in it, however busy
#: the machine (Redis's clock drives these instances, so no clock of the test's can).
LONG_STEP = 60.0

MakeCluster = Callable[..., Awaitable[list[ProgressServer]]]


async def instance(url: str, prefix: str, **overrides: Any) -> ProgressServer:
    backend = RedisBackend(url, prefix=prefix, step_seconds=overrides.pop("step", STEP))
    server = ProgressServer(port=0, backend=backend, rate_limit=1000, **overrides)
    await server.start()
    return server


@pytest.fixture
async def make_cluster(redis_url: str, redis_prefix: str) -> AsyncIterator[MakeCluster]:
    """Makes three instances on one Redis, with the step asked for; closes them after."""
    servers: list[ProgressServer] = []

    async def make(*, step: float) -> list[ProgressServer]:
        servers.extend([await instance(redis_url, redis_prefix, step=step) for _ in range(3)])
        return servers

    yield make
    for server in servers:
        await server.close()


async def test_one_calculation_across_instances(make_cluster: MakeCluster) -> None:
    """A start on one instance and a cancel on another reach the clients of all three,
    identical; the clients count is the total over the instances."""
    cluster = await make_cluster(step=LONG_STEP)
    watchers = [await Watcher.join(server.url) for server in cluster]
    a, b, c = cluster
    _, _, ack = await http_request(a.port, "POST", "/start", headers={"X-Progress-Name": "alice"})
    for watcher in watchers:
        await watcher.until("state", state="STARTING", calculation_id=ack["calculation_id"])
    status, _, _ = await http_request(b.port, "POST", "/cancel", headers={"X-Progress-Name": "bob"})
    assert status == 202
    for watcher in watchers:
        await watcher.until("state", state="CANCELED", calculation_id=ack["calculation_id"])
        await watcher.until("clients", count=3)
    first = watchers[0].states
    assert all(w.states == first for w in watchers)
    assert first[-1]["by"]["name"] == "bob" and first[-1]["started_by"]["name"] == "alice"
    _, _, state = await http_request(c.port, "GET", "/state")
    assert state == first[-1]
    for watcher in watchers:
        await watcher.close()


async def test_two_starts_at_once_exactly_one_wins(make_cluster: MakeCluster) -> None:
    """Starts on every instance at the same moment: one ack, the others already_running."""
    cluster = await make_cluster(step=LONG_STEP)
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


#: Actions each instance's actor sends in the random test, all three at once.
ACTIONS = 67


async def test_random_actions_from_random_instances_agree(make_cluster: MakeCluster) -> None:
    """Hundreds of starts and cancels from every instance at once, some aimed at
    deadlines: for every seq every client saw the same content, each client's seq
    strictly increases, and all end on the state Redis holds."""
    cluster = await make_cluster(step=STEP)
    watchers = [await Watcher.join(server.url) for server in cluster for _ in range(2)]
    # They read what they are sent, like any client: one that never read would hold up
    # its own closing handshake.
    actors = [await Watcher.join(server.url) for server in cluster]

    async def act(number: int, actor: Watcher) -> None:
        rng = random.Random(10 + number)
        for index in range(ACTIONS):
            action = rng.choice(["start", "cancel"])
            await send_json(actor.ws, {"action": action, "request_id": f"{number}-{index}"})
            await asyncio.sleep(rng.choice([0, 0.001, STEP / 2, STEP]))
        # Every action was performed (accepted or refused) once its answer is here.
        for index in range(ACTIONS):
            await actor.until(("ack", "error"), request_id=f"{number}-{index}")

    await asyncio.gather(*(act(number, actor) for number, actor in enumerate(actors)))
    async with asyncio.timeout(TIMEOUT):  # the last calculation ends, if one runs
        while True:
            _, _, final = await http_request(cluster[0].port, "GET", "/state")
            if final["state"] in ("IDLE", "SUCCESS", "CANCELED"):
                break
            await asyncio.sleep(STEP)
    for watcher in watchers:
        await watcher.until("state", seq=final["seq"])
    by_seq: dict[int, dict[str, Any]] = {}
    for watcher in watchers:
        seqs = [state["seq"] for state in watcher.states]
        assert seqs == sorted(set(seqs)), "a client saw seq go backwards or repeat"
        for state in watcher.states:
            assert by_seq.setdefault(state["seq"], state) == state, "one seq, two contents"
        assert watcher.states[-1] == final
    refusals = {m["code"] for actor in actors for m in actor.messages if m["type"] == "error"}
    assert refusals <= {"already_running", "not_running"}, refusals
    assert final["seq"] > 50
    backend = cluster[0].backend
    assert isinstance(backend, RedisBackend) and backend.record is not None
    assert backend.record.seq == final["seq"]
    for watcher in [*actors, *watchers]:
        await watcher.close()


async def test_a_run_survives_the_loss_of_the_instance_that_drove_it(
    redis_url: str, redis_prefix: str
) -> None:
    """SIGKILL the instance the run was started on, in each running state (as soon as a
    client hears of that state): another one drives the rest, on time, and its clients
    see every state once. The three cases run side by side, each on keys of its own."""
    step = 0.3 * TIME_FACTOR

    async def kill_in(killed_in: str) -> None:
        prefix = f"{redis_prefix}{killed_in}:"
        args = ("--redis-url", redis_url, "--redis-prefix", prefix, "--step-seconds", str(step))
        async with AsyncExitStack() as stack:
            first, second = await asyncio.gather(
                stack.enter_async_context(ServerProcess(*args)),
                stack.enter_async_context(ServerProcess(*args)),
            )
            watcher = await Watcher.join(second.url)
            stack.push_async_callback(watcher.close)
            _, _, ack = await http_request(first.port, "POST", "/start")
            calculation_id = ack["calculation_id"]
            await watcher.until("state", state=killed_in, calculation_id=calculation_id)
            first.signal(signal.SIGKILL)
            await watcher.until("state", state="SUCCESS", calculation_id=calculation_id)
            run = [s for s in watcher.states if s["calculation_id"] == calculation_id]
            assert [s["state"] for s in run] == [
                "STARTING",
                "IN_PROGRESS",
                "ALMOST_DONE",
                "SUCCESS",
            ], f"killed in {killed_in}"
            assert run[-1]["changed_at"] == pytest.approx(run[0]["started_at"] + 3 * step)

    await asyncio.gather(*(kill_in(state) for state in ("STARTING", "IN_PROGRESS", "ALMOST_DONE")))


@pytest.mark.parametrize("keep_data", [False, True], ids=["empty", "with-its-data"])
async def test_redis_lost_and_back(
    redis_prefix: str, caplog: pytest.LogCaptureFixture, keep_data: bool
) -> None:
    """Redis stops: clients keep their state, actions get `unavailable` (HTTP 503),
    /readyz is 503 and says why, /healthz (liveness) stays 200 and says it too; Redis
    comes back, empty or with its data: seq never goes backwards (an empty Redis gets
    the last state the instance knew), and actions work again."""
    async with RedisServer(keep_data=keep_data) as redis:
        # The cancel comes while the run is on, however busy the machine.
        server = await instance(redis.url, redis_prefix, step=LONG_STEP)
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
            watcher = await Watcher.join(server.url)
            _, _, ack = await http_request(server.port, "POST", "/start")
            await watcher.until("state", state="STARTING")
            await redis.stop(kill=True)
            await asyncio.sleep(2 * step)  # IN_PROGRESS comes due while Redis is away
            await redis.start()
            await watcher.until("state", state="SUCCESS")
            run = [s for s in watcher.states if s["calculation_id"] == ack["calculation_id"]]
            assert [s["state"] for s in run] == [
                "STARTING",
                "IN_PROGRESS",
                "ALMOST_DONE",
                "SUCCESS",
            ]
            seqs = [s["seq"] for s in watcher.states]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            await watcher.close()
        finally:
            await server.close()
