"""Who did what, and what happened before: attribution in every state, and the history."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from websockets.asyncio.client import connect

from progress_server.calculation import HISTORY_LENGTH
from progress_server.server import ProgressServer
from tests.helpers import (
    STEP,
    TIMEOUT,
    SteppedServer,
    http_request,
    join,
    recv_json,
    recv_type,
    send_json,
    states_until,
)


async def named(url: str, name: str):  # type: ignore[no-untyped-def]
    """A client that names itself the way progress-tui does (the header)."""
    ws = await connect(url, additional_headers={"X-Progress-Name": quote(name)})
    hello = await recv_json(ws)
    await recv_type(ws, "state")
    return ws, hello


async def test_start_and_cancel_say_who_asked(stepped: SteppedServer) -> None:
    """STARTING and CANCELED carry by (client id and name); the timer's states carry
    none; every state of the run carries started_at; CANCELED says what it interrupted."""
    alice, alice_hello = await named(stepped.url, "alice@laptop")
    bob, bob_hello = await named(stepped.url, "Bøb @ desk")
    watcher, _, _ = await join(stepped.url)
    await send_json(alice, {"action": "start"})
    starting = await recv_type(watcher, "state")
    assert starting["by"] == {"client_id": alice_hello["client_id"], "name": "alice@laptop"}
    await stepped.step()
    in_progress = await recv_type(watcher, "state")
    assert in_progress["by"] is None
    # Who started it, on every state of it: a client that joins now knows too.
    assert in_progress["started_by"] == starting["by"]
    assert in_progress["started_at"] == starting["started_at"] == starting["changed_at"]
    await send_json(bob, {"action": "cancel"})
    canceled = await recv_type(watcher, "state")
    assert canceled["state"] == "CANCELED"
    assert canceled["canceled_during"] == "IN_PROGRESS"
    assert canceled["by"] == {"client_id": bob_hello["client_id"], "name": "Bøb @ desk"}
    assert canceled["started_by"] == starting["by"]
    for ws in (alice, bob, watcher):
        await ws.close()


async def test_names_are_cleaned_and_defaulted(stepped: SteppedServer) -> None:
    """Control characters go, 64 characters at most; a browser's ?name= works; a raw
    client without a name is shown by its client id."""
    evil, _ = await named(stepped.url, "eve\x1b[2J\r\n" + "x" * 100)
    await send_json(evil, {"action": "start"})
    state = await recv_type(evil, "state")
    assert state["by"]["name"] == "eve[2J" + "x" * 58
    await send_json(evil, {"action": "cancel"})
    await recv_type(evil, "state")

    async with connect(f"{stepped.url}?name=dash%20page") as page:
        await recv_type(page, "state")
        await send_json(page, {"action": "start"})
        assert (await recv_type(page, "state"))["by"]["name"] == "dash page"
        await send_json(page, {"action": "cancel"})
        await recv_type(page, "state")

    anonymous, hello, _ = await join(stepped.url)
    await send_json(anonymous, {"action": "start"})
    by = (await recv_type(anonymous, "state"))["by"]
    assert by == {"client_id": hello["client_id"], "name": hello["client_id"]}
    await anonymous.close()
    await evil.close()


async def test_http_actions_are_attributed(stepped: SteppedServer) -> None:
    """X-Progress-Name names an HTTP action; without it, "http <address>"."""
    watcher, _, _ = await join(stepped.url)
    await http_request(stepped.port, "POST", "/start", headers={"X-Progress-Name": "cron@box"})
    assert (await recv_type(watcher, "state"))["by"] == {"client_id": None, "name": "cron@box"}
    await http_request(stepped.port, "POST", "/cancel")
    canceled = await recv_type(watcher, "state")
    assert canceled["by"] == {"client_id": None, "name": "http 127.0.0.1"}
    await watcher.close()


async def test_history_newest_first_everywhere(stepped: SteppedServer) -> None:
    """A run that ends is broadcast as history; the action, GET /history and a joiner get
    the same runs, newest first, with who started and who canceled."""
    alice, alice_hello = await named(stepped.url, "alice")
    await send_json(alice, {"action": "start"})
    await recv_type(alice, "ack")
    await stepped.step(3)
    await states_until(alice, "SUCCESS")
    first = await recv_type(alice, "history")
    assert [run["outcome"] for run in first["runs"]] == ["SUCCESS"]
    await send_json(alice, {"action": "start"})
    await recv_type(alice, "state")
    await http_request(stepped.port, "POST", "/cancel", headers={"X-Progress-Name": "bob"})
    second = await recv_type(alice, "history")
    newest, oldest = second["runs"]
    assert oldest == first["runs"][0]
    assert newest["outcome"] == "CANCELED"
    assert newest["canceled_during"] == "STARTING"
    assert newest["started_by"] == {"client_id": alice_hello["client_id"], "name": "alice"}
    assert newest["canceled_by"] == {"client_id": None, "name": "bob"}
    assert newest["ended_at"] >= newest["started_at"]

    await send_json(alice, {"action": "history", "request_id": "h1"})
    assert await recv_type(alice, "history") == second
    _, _, body = await http_request(stepped.port, "GET", "/history")
    assert body == second
    joiner, _, _ = await join(stepped.url)
    assert await recv_json(joiner) == second  # right after hello and state
    await joiner.close()
    await alice.close()


async def test_the_history_is_bounded() -> None:
    """The server keeps the last 20 runs."""
    async with ProgressServer(port=0, step_seconds=STEP, rate_limit=1000) as server:
        ws, _, _ = await join(server.url)
        async with asyncio.timeout(TIMEOUT * 2):
            for _ in range(HISTORY_LENGTH + 3):
                await send_json(ws, {"action": "start"})
                await recv_type(ws, "state")
                await send_json(ws, {"action": "cancel"})
                history = await recv_type(ws, "history")
        assert len(history["runs"]) == HISTORY_LENGTH
        await ws.close()
