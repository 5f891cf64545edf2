"""The WebSocket server, with a real server on a free port and real clients."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect

from progress_server.server import SERVER_NAME, ProgressServer
from tests.helpers import (
    STEP,
    TIME_FACTOR,
    TIMEOUT,
    SteppedServer,
    join,
    no_message_of_type,
    recv_json,
    recv_type,
    send_json,
    states_until,
)

RUN = ["STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"]


async def test_hello_then_the_current_state(server: ProgressServer) -> None:
    """The first messages are hello (which says who the server takes the client
    for), then the current state, the history, who is here and the clients count."""
    ws, hello, state = await join(server.url)
    async with ws:
        assert hello["protocol"] == 1
        assert hello["server"] == SERVER_NAME
        assert isinstance(hello["client_id"], str) and hello["client_id"]
        # No token: everyone is an operator, by the name they give (none here).
        assert (hello["name"], hello["role"]) == (None, "operator")
        assert hello["commands"] == ["start", "cancel"]
        assert state["state"] == "IDLE"
        assert state["calculation_id"] is None
        assert state["seq"] == 0
        assert state["step_seconds"] == pytest.approx(STEP)
        assert abs(state["changed_at"] - time.time()) < TIMEOUT
        assert state["started_at"] is None and state["by"] is None
        assert await recv_json(ws) == {"type": "history", "runs": []}
        assert await recv_json(ws) == {
            "type": "presence",
            "total": 1,
            "connections": 1,
            "people": [{"name": None, "role": "operator", "clients": ["other"], "connections": 1}],
        }
        assert await recv_json(ws) == {"type": "clients", "count": 1}


async def test_full_run_seen_by_three_clients(server: ProgressServer) -> None:
    """Three clients see the same states, in the same order, with the same seq."""
    clients = [(await join(server.url))[0] for _ in range(3)]
    await send_json(clients[0], {"action": "start", "request_id": "go"})
    runs = await asyncio.gather(*(states_until(ws, "SUCCESS") for ws in clients))
    for run in runs:
        assert [m["state"] for m in run] == RUN
        assert [m["seq"] for m in run] == [1, 2, 3, 4]
        assert len({m["calculation_id"] for m in run}) == 1
    assert runs[0] == runs[1] == runs[2]
    for ws in clients:
        await ws.close()


async def test_ack_goes_to_the_requester_before_the_broadcast(server: ProgressServer) -> None:
    """start gets an ack with the new id and the request_id, then STARTING follows."""
    ws, _, _ = await join(server.url)
    async with ws:
        await recv_type(ws, "clients")
        await send_json(ws, {"action": "start", "request_id": "r-1"})
        ack = await recv_json(ws)
        assert ack["type"] == "ack"
        assert ack["action"] == "start"
        assert ack["request_id"] == "r-1"
        starting = await recv_json(ws)
        assert starting["state"] == "STARTING"
        assert starting["calculation_id"] == ack["calculation_id"]


async def test_other_clients_get_the_broadcast_but_not_the_ack(server: ProgressServer) -> None:
    """The ack is for the requester alone; everyone gets the state."""
    actor, _, _ = await join(server.url)
    watcher, _, _ = await join(server.url)
    await send_json(actor, {"action": "start"})
    assert (await recv_type(watcher, "state"))["state"] == "STARTING"
    await states_until(watcher, "SUCCESS")
    await no_message_of_type(watcher, "ack", STEP)
    await actor.close()
    await watcher.close()


@pytest.mark.parametrize("running", ["STARTING", "IN_PROGRESS", "ALMOST_DONE"])
async def test_cancel_in_each_running_state(stepped: SteppedServer, running: str) -> None:
    """cancel during a running state: the ack, then CANCELED saying what it interrupted;
    no state follows, however many steps later."""
    ws, _, _ = await join(stepped.url)
    async with ws:
        await send_json(ws, {"action": "start"})
        await recv_type(ws, "ack")
        await stepped.step(RUN.index(running))
        await states_until(ws, running)
        await send_json(ws, {"action": "cancel", "request_id": "stop"})
        ack = await recv_type(ws, "ack")
        assert ack["action"] == "cancel"
        assert ack["request_id"] == "stop"
        canceled = await recv_type(ws, "state")
        assert canceled["state"] == "CANCELED"
        assert canceled["canceled_during"] == running
        assert canceled["calculation_id"] == ack["calculation_id"]
        await stepped.step(2)
        # A state broadcast by those steps would come before the answer to this status.
        await send_json(ws, {"action": "status"})
        assert await recv_type(ws, "state") == canceled


async def test_late_joiner_gets_the_current_state_at_once(stepped: SteppedServer) -> None:
    """A client joining mid-run gets hello and the running state, then follows along."""
    first, _, _ = await join(stepped.url)
    await send_json(first, {"action": "start"})
    await states_until(first, "STARTING")
    await stepped.step()
    seen = await states_until(first, "IN_PROGRESS")
    late, hello, state = await join(stepped.url)
    assert hello["type"] == "hello"
    assert state == seen[-1]
    await stepped.step(2)
    rest = await states_until(late, "SUCCESS")
    assert [m["state"] for m in rest] == RUN[2:]
    assert [m["seq"] for m in rest] == [state["seq"] + 1, state["seq"] + 2]
    await first.close()
    await late.close()


async def test_late_joiners_never_see_seq_go_back(server: ProgressServer) -> None:
    """Clients joining all through a run see strictly increasing seq numbers."""
    starter, _, _ = await join(server.url)
    await send_json(starter, {"action": "start"})
    await recv_type(starter, "ack")
    await starter.close()
    joiners = []
    for _ in range(8):  # over about two of the three steps
        joiners.append(await join(server.url))
        await asyncio.sleep(STEP / 4)
    for ws, _, first in joiners:
        run = [first]
        if first["state"] != "SUCCESS":
            run += await states_until(ws, "SUCCESS")
        seqs = [m["seq"] for m in run]
        assert seqs == sorted(set(seqs)), seqs
        assert seqs[-1] == 4
        await ws.close()


async def test_status_answers_this_client_alone(server: ProgressServer) -> None:
    """status gets the current state back; other clients get nothing."""
    asker, _, _ = await join(server.url)
    other, _, _ = await join(server.url)
    await recv_type(asker, "clients")
    await send_json(asker, {"action": "status", "request_id": "s"})
    answer = await recv_type(asker, "state")
    assert answer["state"] == "IDLE"
    assert answer["seq"] == 0
    await no_message_of_type(other, "state", STEP)
    await asker.close()
    await other.close()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{oops", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"request_id": "r"}', "invalid_message"),
        ('{"action": ["start"]}', "invalid_message"),
        ('{"action": "start", "request_id": 12}', "invalid_message"),
        ('{"action": "start", "request_id": "' + "x" * 65 + '"}', "invalid_message"),
        ('{"action": "explode"}', "unknown_action"),
        ('{"action": "cancel"}', "not_running"),
        (b"\x01\x02", "unsupported_frame"),
    ],
)
async def test_each_error_code_keeps_the_connection_usable(
    server: ProgressServer, message: str | bytes, code: str
) -> None:
    """A bad message gets an error with a sentence, changes nothing, and closes nothing."""
    ws, _, _ = await join(server.url)
    async with ws:
        await recv_type(ws, "clients")
        await ws.send(message)
        error = await recv_json(ws)
        assert error["type"] == "error"
        assert error["code"] == code
        assert len(error["message"]) > 10 and error["message"].endswith(".")
        # Still connected, still IDLE.
        await send_json(ws, {"action": "status"})
        state = await recv_json(ws)
        assert state["state"] == "IDLE" and state["seq"] == 0


async def test_already_running_echoes_the_request_id(stepped: SteppedServer) -> None:
    """A second start is refused with already_running; the run goes on unchanged."""
    ws, _, _ = await join(stepped.url)
    async with ws:
        await send_json(ws, {"action": "start"})
        ack = await recv_type(ws, "ack")
        await send_json(ws, {"action": "start", "request_id": "again"})
        error = await recv_type(ws, "error")
        assert error["code"] == "already_running"
        assert error["request_id"] == "again"
        await stepped.step(3)
        run = await states_until(ws, "SUCCESS")
        assert {m["calculation_id"] for m in run} == {ack["calculation_id"]}


async def test_clients_count_on_connect_and_disconnect(server: ProgressServer) -> None:
    """Everyone connected gets the new count when a client comes or goes."""
    first, _, _ = await join(server.url)
    assert await recv_type(first, "clients") == {"type": "clients", "count": 1}
    second, _, _ = await join(server.url)
    assert (await recv_type(first, "clients"))["count"] == 2
    assert (await recv_type(second, "clients"))["count"] == 2
    await second.close()
    assert (await recv_type(first, "clients"))["count"] == 1
    await first.close()


async def test_a_vanished_client_is_removed(server: ProgressServer) -> None:
    """A client whose TCP connection drops without a close frame leaves the count."""
    first, _, _ = await join(server.url)
    second, _, _ = await join(server.url)
    assert (await recv_type(first, "clients"))["count"] == 1
    assert (await recv_type(first, "clients"))["count"] == 2
    second.transport.abort()
    assert (await recv_type(first, "clients"))["count"] == 1
    await first.close()


async def test_other_paths_get_404(server: ProgressServer) -> None:
    """A WebSocket handshake on another path is refused with 404."""
    with pytest.raises(Exception, match="404"):
        await connect(server.url.replace("/progress", "/elsewhere"), open_timeout=TIMEOUT)


async def test_at_the_default_step_a_state_lasts_two_seconds() -> None:
    """At the default step, IN_PROGRESS comes 2 s after STARTING, on the clock and by
    its stamp (the whole run's timing is checked with short steps elsewhere)."""
    async with ProgressServer(port=0) as server:
        ws, _, state = await join(server.url)
        async with ws:
            assert state["step_seconds"] == 2.0
            # Measured from before the start was sent: the step cannot end sooner.
            sent = time.monotonic()
            await send_json(ws, {"action": "start"})
            starting = await recv_type(ws, "state")
            in_progress = await recv_type(ws, "state", timeout=2.0 + TIMEOUT)
            received = time.monotonic() - sent
            await send_json(ws, {"action": "cancel"})
        assert (starting["state"], in_progress["state"]) == ("STARTING", "IN_PROGRESS")
        late = 0.1 * TIME_FACTOR
        assert 2.0 <= received < 2.0 + late, (
            f"IN_PROGRESS came {received:.3f} s after the start was sent: "
            f"not within [2, {2.0 + late:g}) s"
        )
        assert in_progress["changed_at"] - starting["changed_at"] == pytest.approx(2.0, abs=1e-6)
