"""The Redis backend at the edges of its timeouts: a real redis-server behind a proxy
that delays, holds, stalls or black-holes what passes (tests/proxy.py), and real
servers and clients in front of it."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis.asyncio as aioredis

from progress_server.backends.redis import DEFAULT_TIMEOUT, RedisBackend
from progress_server.config import ServerConfig
from progress_server.server import ProgressServer
from tests.helpers import (
    TIME_FACTOR,
    TIMEOUT,
    ServerProcess,
    Watcher,
    http_request,
    join,
    recv_json,
    send_json,
)
from tests.proxy import Proxy
from tests.redis_server import RedisServer

#: The round-trip budget of the instances behind the proxy: short, so that the tests
#: are, but far above a round trip on a busy machine.
REDIS_TIMEOUT = 0.3 * TIME_FACTOR

#: What commits a change: the compare-and-set script (EXEC, of a transaction, before it).
COMMITS = (b"EVALSHA", b"EXEC")


async def instance(
    url: str, prefix: str, *, step: float, timeout: float = DEFAULT_TIMEOUT, **overrides: Any
) -> ProgressServer:
    backend = RedisBackend(url, prefix=prefix, step_seconds=step, timeout=timeout)
    server = ProgressServer(port=0, backend=backend, rate_limit=1000, **overrides)
    await server.start()
    return server


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def started(stack: AsyncExitStack, server: ProgressServer) -> ProgressServer:
    stack.push_async_callback(server.close)
    return server


def one_path(states: list[dict[str, Any]], calculation_id: str) -> list[str]:
    """The states one calculation went through, as a client saw them."""
    return [s["state"] for s in states if s["calculation_id"] == calculation_id]


def test_an_action_is_answered_before_a_request_times_out() -> None:
    """The default budget of an action (two round trips' worth) ends well before the
    time a handshake or an HTTP request may take: the answer always goes out."""
    assert ServerConfig().handshake_timeout - 1 > 2 * DEFAULT_TIMEOUT


async def test_readiness_comes_back_within_a_second_of_redis(
    redis_url: str, redis_prefix: str, stack: AsyncExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stalls past the round-trip timeout in the middle of a run: /readyz says
    503 while it does, and 200 again within a second of its return; the loss and the
    return are logged once each; the run ends as it should."""
    caplog.set_level(logging.INFO, "progress_server")
    proxy = await stack.enter_async_context(Proxy.before(redis_url))
    server = await started(
        stack,
        await instance(proxy.url(), redis_prefix, step=0.5 * TIME_FACTOR, timeout=REDIS_TIMEOUT),
    )
    watcher = await Watcher.join(server.url)
    stack.push_async_callback(watcher.close)
    _, _, ack = await http_request(server.port, "POST", "/start")
    await watcher.until("state", state="IN_PROGRESS")
    proxy.stall()
    async with asyncio.timeout(TIMEOUT):
        while (await http_request(server.port, "GET", "/readyz"))[0] != 503:
            await asyncio.sleep(0.02)
    await asyncio.sleep(2 * REDIS_TIMEOUT)  # well past the timeout: every read failed
    proxy.resume()
    back = time.monotonic()
    async with asyncio.timeout(TIMEOUT):
        while (await http_request(server.port, "GET", "/readyz"))[0] != 200:
            await asyncio.sleep(0.02)
    took = time.monotonic() - back
    assert took < 1.0 * TIME_FACTOR, f"/readyz was 200 again {took:.2f} s after Redis"
    await watcher.until("state", state="SUCCESS", calculation_id=ack["calculation_id"])
    assert caplog.text.count("is unreachable") == 1, caplog.text
    assert caplog.text.count("is reachable again") == 1, caplog.text


@pytest.mark.parametrize("action", ["start", "cancel"])
async def test_an_answer_lost_after_the_write_is_resolved_not_retried(
    redis_url: str, redis_prefix: str, stack: AsyncExitStack, action: str
) -> None:
    """Redis applies an action but its answer is held past the timeout: the instance
    looks the action up, finds it landed, and acknowledges it. One path per
    calculation, seq without a repeat, and never already_running or not_running for an
    action of one's own."""
    step = 0.5 * TIME_FACTOR
    proxy = await stack.enter_async_context(Proxy.before(redis_url))
    direct = await started(stack, await instance(redis_url, redis_prefix, step=step))
    slow = await started(
        stack, await instance(proxy.url(), redis_prefix, step=step, timeout=REDIS_TIMEOUT)
    )
    watcher = await Watcher.join(direct.url)
    actor = await Watcher.join(slow.url)
    stack.push_async_callback(watcher.close)
    stack.push_async_callback(actor.close)
    if action == "cancel":
        await send_json(actor.ws, {"action": "start", "request_id": "first"})
        await actor.until("state", state="STARTING")
    held = proxy.hold_reply(COMMITS, 3 * REDIS_TIMEOUT)
    await send_json(actor.ws, {"action": action, "request_id": "mine"})
    reply = await actor.until("ack", request_id="mine")
    assert held.is_set(), "the proxy never held the answer: the test proved nothing"
    assert not [m for m in actor.messages if m["type"] == "error"], actor.messages
    calculation_id = reply["calculation_id"]
    final = "SUCCESS" if action == "start" else "CANCELED"
    await watcher.until("state", state=final, calculation_id=calculation_id)
    await actor.until("state", state=final, calculation_id=calculation_id)
    for client in (watcher, actor):
        seqs = [s["seq"] for s in client.states]
        assert seqs == sorted(set(seqs)), f"a seq came twice or out of order: {seqs}"
        path = one_path(client.states, calculation_id)
        assert path.count("STARTING") == 1, path
        assert path[-1] == final, path
    # The reply came before the state it caused, as always.
    mine = next(
        i
        for i, m in enumerate(actor.messages)
        if m["type"] == "state"
        and m["calculation_id"] == calculation_id
        and m["state"] == ("STARTING" if action == "start" else "CANCELED")
    )
    assert actor.messages.index(reply) < mine


async def test_an_answer_that_cannot_be_known_is_unavailable_not_a_guess(
    redis_url: str, redis_prefix: str, stack: AsyncExitStack
) -> None:
    """Redis applies a start, then nothing answers at all until the budget is spent:
    the requester hears `unavailable` saying it may or may not have been applied (not
    an ack, not a refusal), and the run it started is there for everyone after."""
    proxy = await stack.enter_async_context(Proxy.before(redis_url))
    server = await started(
        stack,
        await instance(proxy.url(), redis_prefix, step=0.5 * TIME_FACTOR, timeout=REDIS_TIMEOUT),
    )
    actor = await Watcher.join(server.url)
    stack.push_async_callback(actor.close)
    held = proxy.hold_reply(COMMITS, 60)
    await send_json(actor.ws, {"action": "start", "request_id": "mine"})
    async with asyncio.timeout(TIMEOUT):
        await held.wait()
    proxy.stall()
    error = await actor.until("error", request_id="mine")
    assert error["code"] == "unavailable"
    assert "may or may not have been applied" in error["message"]
    proxy.resume()
    state = await actor.until("state", state="STARTING")
    assert state["calculation_id"] is not None


async def test_http_actions_during_a_stall_get_503_in_time(
    redis_url: str, redis_prefix: str, stack: AsyncExitStack
) -> None:
    """Redis accepts and does not answer: POST /start and /cancel are answered 503
    `unavailable` with Retry-After before the request's own time runs out, and a
    WebSocket start gets `unavailable` too."""
    proxy = await stack.enter_async_context(Proxy.before(redis_url))
    handshake_timeout = 4 * REDIS_TIMEOUT  # the budget of an action is 2 x the timeout
    server = await started(
        stack,
        await instance(
            proxy.url(),
            redis_prefix,
            step=0.5 * TIME_FACTOR,
            timeout=REDIS_TIMEOUT,
            handshake_timeout=handshake_timeout,
        ),
    )
    ws, _, _ = await join(server.url)
    proxy.stall()
    for path in ("/start", "/cancel"):
        status, headers, body = await http_request(server.port, "POST", path)
        assert (status, body["code"]) == (503, "unavailable"), body
        assert headers["retry-after"] == "1"
    await send_json(ws, {"action": "start", "request_id": "r"})
    async with asyncio.timeout(TIMEOUT):
        while (message := await recv_json(ws))["type"] != "error":
            pass
    assert (message["code"], message["request_id"]) == ("unavailable", "r")
    proxy.resume()
    await ws.close()


async def test_a_subscription_dead_in_silence_is_noticed_and_made_again(
    redis_url: str, redis_prefix: str, stack: AsyncExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection an instance hears the changes on is black-holed (no RST, no FIN):
    the instance notices within its ping timeout, says it is not ready, subscribes
    again and resyncs its clients to the run another instance drives."""
    caplog.set_level(logging.INFO, "progress_server")
    proxy = await stack.enter_async_context(Proxy.before(redis_url))
    step = 0.3 * TIME_FACTOR
    driver = await started(stack, await instance(redis_url, redis_prefix, step=step))
    deaf = await started(
        stack, await instance(proxy.url(), redis_prefix, step=step, timeout=REDIS_TIMEOUT)
    )
    watcher = await Watcher.join(deaf.url)
    stack.push_async_callback(watcher.close)
    assert proxy.blackhole(lambda link: b"SUBSCRIBE" in link.sent), "no subscription found"
    _, _, ack = await http_request(driver.port, "POST", "/start")
    final = await watcher.until(
        "state", state="SUCCESS", calculation_id=ack["calculation_id"], timeout=TIMEOUT
    )
    _, _, state = await http_request(deaf.port, "GET", "/state")
    assert state["seq"] >= final["seq"]
    assert "answered no ping" in caplog.text
    async with asyncio.timeout(TIMEOUT):
        while (await http_request(deaf.port, "GET", "/readyz"))[0] != 200:
            await asyncio.sleep(0.02)


async def test_a_deadline_another_instance_committed_reaches_the_clients_anyway(
    redis_url: str, redis_prefix: str, stack: AsyncExitStack
) -> None:
    """An instance whose subscription died in silence still follows a run it knows:
    at each deadline its own transaction finds the change another instance committed,
    and hands that to its clients, before the dead subscription is even noticed."""
    proxy = await stack.enter_async_context(Proxy.before(redis_url))
    proxy.latency = 0.02  # the far instance loses every deadline to the near one
    step = 0.2 * TIME_FACTOR
    near = await started(stack, await instance(redis_url, redis_prefix, step=step))
    far = await started(
        stack, await instance(proxy.url(), redis_prefix, step=step, timeout=5 * TIME_FACTOR)
    )
    watcher = await Watcher.join(far.url)
    stack.push_async_callback(watcher.close)
    await send_json(watcher.ws, {"action": "start", "request_id": "go"})
    ack = await watcher.until("ack", request_id="go")
    await watcher.until("state", state="STARTING")
    assert proxy.blackhole(lambda link: b"SUBSCRIBE" in link.sent)
    # The far instance notices the silence only after 10 s; the run takes 3 steps.
    await watcher.until("state", state="SUCCESS", calculation_id=ack["calculation_id"])
    assert one_path(watcher.states, ack["calculation_id"]) == [
        "STARTING",
        "IN_PROGRESS",
        "ALMOST_DONE",
        "SUCCESS",
    ]
    assert near.hub is not None and near.hub.snapshot.state.value == "SUCCESS"


async def test_an_instance_far_from_redis_can_cancel_and_hears_on_time(
    redis_url: str, redis_prefix: str, stack: AsyncExitStack
) -> None:
    """An instance 40 ms from Redis each way, beside two near ones that commit every
    deadline first: its cancels land (none lost to the timers for good), and its
    clients get each transition about a round trip after its deadline, not held while
    an action of its own retries."""
    proxy = await stack.enter_async_context(Proxy.before(redis_url))
    proxy.latency = 0.04
    step = 0.3 * TIME_FACTOR
    near = [await started(stack, await instance(redis_url, redis_prefix, step=step)) for _ in "ab"]
    far = await started(stack, await instance(proxy.url(), redis_prefix, step=step))
    watcher = await Watcher.join(far.url)
    stack.push_async_callback(watcher.close)
    accepted = 0
    for round_ in range(5):
        _, _, ack = await http_request(near[round_ % 2].port, "POST", "/start")
        await watcher.until("state", state="STARTING", calculation_id=ack["calculation_id"])
        await send_json(watcher.ws, {"action": "cancel", "request_id": f"c{round_}"})
        reply = await watcher.until(("ack", "error"), request_id=f"c{round_}")
        accepted += reply["type"] == "ack"
        await watcher.until("state", calculation_id=ack["calculation_id"], state="CANCELED")
    assert accepted == 5, [m for m in watcher.messages if m["type"] in ("ack", "error")]
    # Lateness of the deadline transitions the far instance's client saw.
    late = [
        arrived - message["changed_at"]
        for message, arrived in zip(watcher.messages, watcher.arrived, strict=True)
        if message["type"] == "state" and message["state"] in ("IN_PROGRESS", "ALMOST_DONE")
    ]
    assert max(late, default=0.0) < 0.5 * TIME_FACTOR, late


async def test_shutdown_is_bounded_while_redis_is_stalled(redis_prefix: str) -> None:
    """Redis stops answering (SIGSTOP) and the server is told to stop: it exits within
    a few seconds, its clients closed, instead of waiting on Redis's timeouts."""
    async with (
        RedisServer() as redis,
        ServerProcess(
            "--redis-url", redis.url, "--redis-prefix", redis_prefix, "--redis-timeout", "2"
        ) as server,
    ):
        ws, _, _ = await join(server.url)
        redis.pause()
        try:
            began = time.monotonic()
            server.signal(signal.SIGTERM)
            assert await server.wait(timeout=TIMEOUT) == 0
            took = time.monotonic() - began
            assert took < 1.5 * TIME_FACTOR, f"stopping took {took:.1f} s"
            async with asyncio.timeout(TIMEOUT):
                async for _ in ws:  # what came before the close frame
                    pass
            assert ws.close_code == 1001
        finally:
            redis.resume()


async def test_many_actions_at_once_go_together(
    redis_url: str, redis_prefix: str, stack: AsyncExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    """150 clients of one instance each send a start or a cancel at the same moment (one
    message each, within every limit): every one gets its answer, none `unavailable`,
    the instance stays ready and logs no trouble: the actions that wait while one is
    written go together in the next write, on one connection."""
    caplog.set_level(logging.WARNING, "progress_server")
    server = await started(stack, await instance(redis_url, redis_prefix, step=60.0))
    clients = await asyncio.gather(*(Watcher.join(server.url) for _ in range(150)))
    for client in clients:
        stack.push_async_callback(client.close)
    actions = ["start" if index % 2 == 0 else "cancel" for index in range(len(clients))]
    await asyncio.gather(
        *(
            send_json(client.ws, {"action": action, "request_id": f"r{index}"})
            for index, (client, action) in enumerate(zip(clients, actions, strict=True))
        )
    )
    replies = [
        await client.until(("ack", "error"), request_id=f"r{index}")
        for index, client in enumerate(clients)
    ]
    unavailable = [reply for reply in replies if reply.get("code") == "unavailable"]
    assert not unavailable, f"{len(unavailable)} of {len(replies)}: {unavailable[0]}"
    # Started, canceled, started...: each action applied on the state the one before left.
    assert [reply["type"] for reply in replies].count("ack") == len(replies)
    assert caplog.text == "", caplog.text  # no trouble said: Redis answered in time
    ready = await http_request(server.port, "GET", "/readyz")
    assert ready[0] == 200, ready


async def test_an_answer_lost_when_redis_restarts_empty_is_found_in_the_record(
    redis_prefix: str, stack: AsyncExitStack
) -> None:
    """A start lands, its answer is held, and Redis restarts empty (losing the action's
    own key) before the instance looks it up: the instance finds the action in the newest
    record it knows, writes that record back, and acknowledges the start; never
    `already_running` for its own start."""
    redis = await stack.enter_async_context(RedisServer())
    proxy = await stack.enter_async_context(Proxy.before(redis.url))
    backend = RedisBackend(proxy.url(), prefix=redis_prefix, step_seconds=60.0, timeout=1.0)
    server = await started(stack, ProgressServer(port=0, backend=backend))
    await server.start()
    actor = await Watcher.join(server.url)
    stack.push_async_callback(actor.close)
    seq = actor.states[-1]["seq"] if actor.states else 0
    held = proxy.hold_reply(COMMITS, 60)
    await send_json(actor.ws, {"action": "start", "request_id": "mine"})
    async with asyncio.timeout(TIMEOUT):
        await held.wait()
        # The change came on the channel (its client waits for the reply first).
        while backend.record is None or backend.record.seq <= seq:
            await asyncio.sleep(0.01)
    await redis.stop(kill=True)
    await redis.start()  # the same port, empty
    reply = await actor.until(("ack", "error"), request_id="mine")
    assert reply["type"] == "ack", reply
    state = await actor.until("state", state="STARTING", calculation_id=reply["calculation_id"])
    assert one_path(actor.states, reply["calculation_id"]) == ["STARTING"]
    assert state["seq"] == seq + 1


async def test_writes_redis_refuses_keep_the_instance_unready(
    redis_prefix: str, stack: AsyncExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis answers but refuses writes (out of memory): an action is answered
    `unavailable` with Redis's reason and no "may or may not" (nothing was written),
    /readyz is 503 until a write goes through again, and the trouble is logged once
    each way."""
    caplog.set_level(logging.INFO, "progress_server")
    redis = await stack.enter_async_context(RedisServer())
    admin = aioredis.from_url(redis.url)
    stack.push_async_callback(admin.aclose)
    server = await started(stack, await instance(redis.url, redis_prefix, step=60.0))
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", "1")
    status, _, body = await http_request(server.port, "POST", "/start")
    assert (status, body["code"]) == (503, "unavailable"), body
    assert "refuses changes" in body["message"] and "maxmemory" in body["message"]
    assert "may or may not" not in body["message"]
    async with asyncio.timeout(TIMEOUT):
        while (await http_request(server.port, "GET", "/readyz"))[0] != 503:
            await asyncio.sleep(0.02)
    await admin.config_set("maxmemory", "0")
    async with asyncio.timeout(TIMEOUT):
        while (await http_request(server.port, "GET", "/readyz"))[0] != 200:
            await asyncio.sleep(0.02)
    assert (await http_request(server.port, "POST", "/start"))[0] == 202
    assert caplog.text.count("refuses changes") == 1, caplog.text
    assert caplog.text.count("is reachable again") == 1, caplog.text


async def test_shutdown_answers_the_actions_in_flight(redis_prefix: str) -> None:
    """Redis stops answering (SIGSTOP) while an HTTP start and a WebSocket start are on
    their way to it, and the server is told to stop: each gets its answer
    (`unavailable`) before the server closes its clients with 1001 and exits."""
    async with (
        RedisServer() as redis,
        ServerProcess(
            "--redis-url",
            redis.url,
            "--redis-prefix",
            redis_prefix,
            "--redis-timeout",
            "0.5",
            "--log-level",
            "debug",
        ) as server,
    ):
        ws = await Watcher.join(server.url)
        redis.pause()
        try:
            posting = asyncio.create_task(http_request(server.port, "POST", "/start"))
            await send_json(ws.ws, {"action": "start", "request_id": "w"})

            def received(words: str) -> bool:
                # websockets' debug line: the request or frame is parsed, and its action
                # is in flight (started in the same call).
                return any(words in line for line in server.lines)

            async with asyncio.timeout(TIMEOUT):
                while not (received("< POST /start") and received('"request_id": "w"')):
                    await asyncio.sleep(0.01)
            server.signal(signal.SIGTERM)
            status, _, body = await posting
            assert (status, body["code"]) == (503, "unavailable")
            reply = await ws.until("error", request_id="w")
            assert reply["code"] == "unavailable"
            assert await server.wait() == 0
            await ws.task
            assert ws.ws.close_code == 1001
        finally:
            redis.resume()
