"""The UI-free client against real servers: events, actions, reconnecting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme
from websockets.asyncio.server import ServerConnection, serve

import progress_client.client as client_module
import progress_client.events as events_module
from progress_client.client import NotConnected, ProgressClient
from progress_client.events import (
    MAX_INVALID_MESSAGES,
    ActionAccepted,
    ClientEvent,
    ClientsChanged,
    Closed,
    Connected,
    Connecting,
    ConnectionLost,
    HistoryReceived,
    PresenceChanged,
    ServerError,
    StateReceived,
    Waiting,
)
from progress_client.failures import MAX_RETRY_AFTER, NOT_TLS
from progress_client.reconnect import ReconnectPolicy
from progress_protocol.messages import Person, Presence, decode_server_message
from progress_protocol.states import State, StateSnapshot
from progress_server.server import ProgressServer
from tests.client.hostile import CASES, HostileServer, Refusal, Script, frame, hello, state
from tests.client.servers import not_found_sentence
from tests.helpers import STEP, TIME_FACTOR, TIMEOUT, ServerProcess, free_port, join

E = TypeVar("E")

#: A short backoff cap, so that the tests reconnect quickly.
CAP = 0.5 * TIME_FACTOR


async def next_event(events: AsyncGenerator[ClientEvent, None], kind: type[E]) -> E:
    """The next event of one kind, skipping others; fails the test if none comes."""
    async with asyncio.timeout(TIMEOUT):
        async for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the events ended before a {kind.__name__}")


def client_for(url: str | list[str], **kwargs: Any) -> ProgressClient:
    return ProgressClient(url, policy=ReconnectPolicy(initial=0.05, cap=CAP), **kwargs)


async def test_connect_yields_hello_state_and_count(server: ProgressServer) -> None:
    """Connecting, Connected (who the server takes it for), the current state, the
    history, who is here (the client by its name and kind), then the clients count."""
    client = client_for(server.url, name="ann", agent="progress-tui")
    async with aclosing(client.events()) as events:
        assert await anext(events) == Connecting(server.url, 1)
        connected = await anext(events)
        assert isinstance(connected, Connected)
        assert connected.server.startswith("progress-server/")
        assert (connected.name, connected.role) == ("ann", "operator")
        assert connected.commands == ("start", "cancel")
        state = await anext(events)
        assert isinstance(state, StateReceived)
        assert state.snapshot.state is State.IDLE
        assert await anext(events) == HistoryReceived(())
        assert await anext(events) == PresenceChanged(
            Presence((Person("ann", "operator", ("tui",), 1),), total=1, connections=1)
        )
        assert await anext(events) == ClientsChanged(1)


async def test_send_gets_an_ack_with_its_request_id(server: ProgressServer) -> None:
    """start is acked with the request id send() returned; STARTING follows."""
    client = client_for(server.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        request_id = await client.send("start")
        accepted = await next_event(events, ActionAccepted)
        assert accepted.ack.request_id == request_id
        starting = await next_event(events, StateReceived)
        assert starting.snapshot.state is State.STARTING
        assert starting.snapshot.calculation_id == accepted.ack.calculation_id


async def test_refusals_come_back_as_server_errors(server: ProgressServer) -> None:
    """cancel while IDLE: a ServerError with the server's sentence and the request id."""
    client = client_for(server.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        request_id = await client.send("cancel")
        refused = await next_event(events, ServerError)
        assert refused.error.code == "not_running"
        assert refused.error.request_id == request_id
        assert "no running calculation" in refused.error.message


async def test_send_while_disconnected_raises() -> None:
    """Nothing can be sent before the connection is up."""
    client = client_for(f"ws://127.0.0.1:{free_port()}/progress")
    with pytest.raises(NotConnected):
        await client.send("start")


async def test_rtt_is_measured_soon_after_connecting(server: ProgressServer) -> None:
    """The round-trip time is known well before the first keepalive ping."""
    client = client_for(server.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        async with asyncio.timeout(TIMEOUT):
            while client.rtt is None:
                await asyncio.sleep(0.01)
        assert 0 < client.rtt < 1.0 * TIME_FACTOR, f"a round trip of {client.rtt:.3f} s"


async def test_reconnects_and_resyncs_after_a_server_restart() -> None:
    """Server gone: ConnectionLost, Waiting with attempts; back: Connected and its state."""
    port = free_port()
    first = ProgressServer(port=port, step_seconds=STEP)
    await first.start()
    client = client_for(first.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        await client.send("start")
        await next_event(events, ActionAccepted)
        await first.close()

        lost = await next_event(events, ConnectionLost)
        assert lost.reason == "the server is going away (1001)"
        assert lost.code == 1001
        waits = [await next_event(events, Waiting) for _ in range(2)]
        assert [w.attempt for w in waits] == [1, 2]
        assert waits[1].error == "connection refused"
        assert all(0 <= w.delay <= CAP for w in waits)

        async with ProgressServer(port=port, step_seconds=STEP):
            loop = asyncio.get_running_loop()
            back_at = loop.time()
            await next_event(events, Connected)
            took = loop.time() - back_at
            assert took <= CAP + TIMEOUT / 5, f"connected again {took:.2f} s after the restart"
            resync = await next_event(events, StateReceived)
            assert resync.snapshot.state is State.IDLE  # the new server's own state
        await client.close()


async def test_a_dead_server_is_detected_by_keepalive() -> None:
    """A server that stops answering (SIGSTOP: no close frame) is noticed by the pings."""
    async with ServerProcess() as server:
        client = client_for(server.url, ping_interval=0.2, ping_timeout=0.2, reconnect=False)
        async with aclosing(client.events()) as events:
            await next_event(events, StateReceived)
            server.signal(signal.SIGSTOP)
            try:
                lost = await next_event(events, ConnectionLost)
                closed = await next_event(events, Closed)
            finally:
                server.signal(signal.SIGCONT)
        assert lost.reason == "the server stopped answering pings"
        assert closed.reason == lost.reason


async def test_without_reconnect_the_first_failure_ends_the_events() -> None:
    """reconnect=False: a refused connection ends with Closed and the reason."""
    client = client_for(f"ws://127.0.0.1:{free_port()}/progress", reconnect=False)
    async with aclosing(client.events()) as events:
        closed = await next_event(events, Closed)
    assert closed.reason == "connection refused"


@pytest.mark.parametrize("path", ["", "/progress/"])
async def test_a_wrong_path_is_refused_for_good_with_the_servers_sentence(path: str) -> None:
    """A handshake refused with 404: no retry, however willing the client, and the
    reason is the server's own sentence, which names the right path."""
    async with ProgressServer(port=0, step_seconds=STEP) as server:
        client = client_for(server.url.replace("/progress", path))
        async with aclosing(client.events()) as events:
            seen = [event async for event in events]
        sentence = await not_found_sentence(server.port, path or "/")
    assert [type(event) for event in seen] == [Connecting, Closed]
    assert sentence.startswith(
        f"There is nothing at {path or '/'}. The WebSocket endpoint is /progress; "
        "the HTTP endpoints are GET /healthz, "
    )
    assert seen[-1] == Closed(
        f"the server refused the connection (HTTP 404): {sentence}", permanent=True
    )


@pytest.mark.parametrize("status", [400, 403, 404, 410, 426, 431])
async def test_a_refusal_for_good_stops_with_the_servers_sentence(status: int) -> None:
    """4xx but 408, 425 and 429: one attempt, then Closed with the body's sentence."""
    refusal = Refusal.error(status, "Go away: this is why.")
    async with HostileServer(refusals=[refusal]) as server:
        client = client_for(server.url)
        async with aclosing(client.events()) as events:
            seen = [event async for event in events]
        assert server.handshakes == 1
        assert seen == [
            Connecting(server.url, 1),
            Closed(
                f"the server refused the connection (HTTP {status}): Go away: this is why.",
                permanent=True,
            ),
        ]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_a_refusal_for_now_is_retried(status: int) -> None:
    """5xx, 408 and 429: the sentence is the wait's reason, and the next attempt goes in."""
    refusal = Refusal.error(status, "Not now.")
    async with HostileServer(refusals=[refusal]) as server:
        client = client_for(server.url)
        async with aclosing(client.events()) as events:
            waiting = await next_event(events, Waiting)
            await next_event(events, Connected)
    assert waiting.error == f"the server refused the connection (HTTP {status}): Not now."
    assert waiting.attempt == 2


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        (Refusal(404, b"<h1>Not Found</h1>", reason="Not Found"), "HTTP 404 Not Found"),
        (Refusal(404, b"\xff\xfe", reason="Not Found"), "HTTP 404 Not Found"),
        (
            Refusal(404, frame(type="error", code="x", message="a" * 2000).encode()),
            "HTTP 404 Refused",
        ),
        (
            Refusal(403, frame(type="error", code="x", message="\x1b[2Jowned").encode()),
            "HTTP 403 Refused",
        ),
        (Refusal(403, frame(type="state").encode(), reason="Forbidden"), "HTTP 403 Forbidden"),
        (Refusal(404, reason="x" * 300), "HTTP 404 " + "x" * 64 + "…"),
    ],
    ids=["html", "not utf-8", "too long", "control characters", "not an error", "long reason"],
)
async def test_a_refusal_without_a_sentence_falls_back_to_the_status_line(
    refusal: Refusal, reason: str
) -> None:
    """A body that is not a valid error object (HTML, too long, with control characters)
    is never shown: the status line is, bounded."""
    async with HostileServer(refusals=[refusal]) as server:
        client = client_for(server.url)
        async with aclosing(client.events()) as events:
            closed = await next_event(events, Closed)
    assert closed == Closed(f"the server refused the connection ({reason})", permanent=True)


async def test_retry_after_is_the_least_wait_up_to_a_bound() -> None:
    """Retry-After: 3 waits 3 s whatever the backoff; a huge one 60 s; an HTTP date, a
    negative or a decimal number is ignored."""
    refusals = [
        Refusal.error(503, "Full.", **{"Retry-After": value})
        for value in ("3", "100000", "Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1.5")
    ]
    async with HostileServer(refusals=refusals) as server:
        client = ProgressClient(
            server.url, policy=ReconnectPolicy(initial=0.01, cap=0.01, random=lambda: 1.0)
        )
        delays = []
        async with aclosing(client.events()) as events:
            for _ in refusals:
                delays.append((await next_event(events, Waiting)).delay)
                client.reconnect_now()  # the test does not wait it out
            await next_event(events, Connected)
    assert delays == [3.0, MAX_RETRY_AFTER, 0.01, 0.01, 0.01]
    assert MAX_RETRY_AFTER == 60.0


async def test_a_full_server_is_retried_after_its_retry_after() -> None:
    """A real server at --max-clients: 503 with its sentence and Retry-After 5; once a
    place is free, the client gets in."""
    async with ProgressServer(port=0, step_seconds=STEP, max_clients=1) as server:
        first, _, _ = await join(server.url)
        client = client_for(server.url)
        async with aclosing(client.events()) as events:
            waiting = await next_event(events, Waiting)
            assert waiting.delay == 5.0
            assert waiting.error == (
                "the server refused the connection (HTTP 503): "
                "The server is full (1 clients); try again later."
            )
            await first.close()
            client.reconnect_now()  # rather than wait 5 s
            async with asyncio.timeout(TIMEOUT):
                async for event in events:
                    if isinstance(event, Waiting):
                        client.reconnect_now()  # the server may not have seen it go yet
                    if isinstance(event, Connected):
                        break


async def test_connection_events_are_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """Connects, refusals, losses with their code, each retry, and the give-up: one line
    each, at INFO, through the client's logger (progress-tui's log file)."""
    port = free_port()
    caplog.set_level(logging.INFO, logger="progress_client.client")
    async with ProgressServer(port=port, step_seconds=STEP) as server:
        url = server.url
        client = client_for(url)
        async with aclosing(client.events()) as events:
            await next_event(events, StateReceived)
            await client.send("cancel")
            await next_event(events, ServerError)
            await server.close()
            await next_event(events, Waiting)
            async with ProgressServer(port=port, token="t0ken"):
                closed = await next_event(events, Closed)
    assert closed.permanent
    records = [r for r in caplog.records if r.name == "progress_client.client"]
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in records)
    lines = [r.getMessage() for r in records]
    assert all("\n" not in line for line in lines)
    assert lines[0].startswith(f"connected to {url} (progress-server/")
    assert lines[1] == (
        "the server refused request cancel-1: There is no running calculation to cancel "
        "(the state is IDLE). (not_running)"
    )
    assert lines[2] == (
        f"lost the connection to {url}: the server is going away (1001) "
        "(close code 1001, reason '')"
    )
    assert re.fullmatch(
        rf"retrying {url} in \d+\.\d s \(attempt 1\): the server is going away \(1001\)",
        lines[3],
    )
    assert lines[-1] == (
        f"gave up on {url}: the server needs a token (HTTP 401): use --token or PROGRESS_TOKEN "
        "(trying again cannot help)"
    )


async def test_events_can_start_again_after_a_refusal_but_not_after_close() -> None:
    """After a refusal for good, events() may be iterated anew (the TUI's "try again"):
    attempt 1 and a fresh backoff. After close(), it ends at once."""
    refusals = [Refusal.error(503, "Full."), Refusal.error(404, "Wrong."), Refusal.error(503, "")]
    async with HostileServer(refusals=refusals) as server:
        client = ProgressClient(
            server.url, policy=ReconnectPolicy(initial=0.01, cap=1.0, random=lambda: 1.0)
        )
        async with aclosing(client.events()) as events:
            assert (await next_event(events, Waiting)).delay == 0.01
            assert (await next_event(events, Closed)).permanent
        async with aclosing(client.events()) as events:
            assert await anext(events) == Connecting(server.url, 1)
            waiting = await next_event(events, Waiting)
            assert (waiting.attempt, waiting.delay) == (2, 0.01)  # not 0.02: a fresh start
            await next_event(events, Connected)
        await client.close()
        async with aclosing(client.events()) as events:
            assert [event async for event in events] == [Closed("closed")]


async def test_reconnect_now_skips_one_wait_only() -> None:
    """reconnect_now() during a wait skips that wait; the next failure waits again."""
    client = ProgressClient(
        f"ws://127.0.0.1:{free_port()}/progress",
        policy=ReconnectPolicy(initial=100, cap=100, random=lambda: 1.0),
    )
    async with aclosing(client.events()) as events:
        await next_event(events, Waiting)
        client.reconnect_now()
        assert (await next_event(events, Waiting)).delay == 100


async def test_reconnect_now_skips_the_wait() -> None:
    """While waiting out a long backoff, reconnect_now() tries again at once."""
    client = ProgressClient(
        f"ws://127.0.0.1:{free_port()}/progress",
        policy=ReconnectPolicy(initial=100, cap=100, random=lambda: 1.0),
    )
    async with aclosing(client.events()) as events:
        await next_event(events, Waiting)
        client.reconnect_now()
        assert (await next_event(events, Connecting)).attempt == 2


async def test_close_ends_the_events_with_code_1000(server: ProgressServer) -> None:
    """close() closes the WebSocket cleanly and the events end with Closed."""
    client = client_for(server.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        assert server.hub is not None
        (connection,) = server.hub.clients
        await client.close()
        assert await next_event(events, Closed) == Closed("closed")
    await connection.wait_closed()
    assert connection.close_code == 1000


async def test_the_token_lets_the_client_in() -> None:
    """With the server's token the client connects; without, it stops and says why."""
    async with ProgressServer(port=0, token="t0ken") as server:
        client = client_for(server.url, token="t0ken")
        async with aclosing(client.events()) as events:
            await next_event(events, StateReceived)
        client = client_for(server.url)
        async with aclosing(client.events()) as events:
            closed = await next_event(events, Closed)
        assert closed.reason == (
            "the server needs a token (HTTP 401): use --token or PROGRESS_TOKEN"
        )
        client = client_for(server.url, token="wrong")
        async with aclosing(client.events()) as events:
            events_seen = []
            async with asyncio.timeout(TIMEOUT):
                async for event in events:
                    events_seen.append(event)
        # Refused for good: one attempt, no backoff loop.
        assert [type(e) for e in events_seen] == [Connecting, Closed]
        assert events_seen[-1] == Closed("the server refused the token (HTTP 401)", permanent=True)


# Against a hostile server.


async def states_until(
    events: AsyncGenerator[ClientEvent, None], final: str
) -> list[StateReceived]:
    """Every state received up to the first in state `final`; fails on a lost connection."""
    received = []
    async with asyncio.timeout(TIMEOUT):
        async for event in events:
            assert not isinstance(event, ConnectionLost), event
            if isinstance(event, StateReceived):
                received.append(event)
                if event.snapshot.state == final:
                    return received
    raise AssertionError("the events ended")


@pytest.mark.parametrize(
    "name", [name for name, case in CASES.items() if case.invalid or case.hidden]
)
async def test_each_hostile_case(name: str) -> None:
    """Invalid messages: the connection is given up with 1002 and the last reason; the
    rest: the valid states arrive, and nothing the server must not show."""
    case = CASES[name]
    async with HostileServer(case.script) as server:
        client = client_for(server.url, reconnect=False)
        async with aclosing(client.events()) as events:
            if case.invalid:
                lost = await next_event(events, ConnectionLost)
                assert lost.reason.startswith("the server sent invalid messages (")
                assert (await next_event(events, Closed)).reason == lost.reason
                assert await server.closed() == [1002]
            else:
                assert case.last_state is not None
                states = await states_until(events, case.last_state)
                ids = " ".join(str(event.snapshot.calculation_id) for event in states)
                assert all(text in ids for text in case.shown)
                assert not any(text in ids for text in case.hidden)
                assert server.close_codes == []  # not given up


async def test_a_lower_seq_is_dropped() -> None:
    """An older state, or the same seq with other content, is dropped; a repeat is not."""
    async with HostileServer(CASES["a lower seq"].script) as server:
        client = client_for(server.url)
        async with aclosing(client.events()) as events:
            states = await states_until(events, "CANCELED")
        seen = [(event.snapshot.seq, event.snapshot.calculation_id) for event in states]
        assert seen == [(5, "first"), (5, "first"), (6, "last")]


async def test_unknown_message_types_are_skipped_and_never_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ten messages of types from a newer server: no event, no warning, no give-up."""
    async with HostileServer(CASES["unknown message types"].script) as server:
        client = client_for(server.url)
        with caplog.at_level(logging.DEBUG, logger="progress_client.client"):
            async with aclosing(client.events()) as events:
                assert isinstance(await anext(events), Connecting)
                assert isinstance(await anext(events), Connected)
                assert (await anext(events)) == StateReceived(
                    StateSnapshot(State.IDLE, None, 1, 1_700_000_000.0, 2.0)
                )
                assert isinstance(await anext(events), StateReceived)
        assert server.connections == 1
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_fewer_invalid_messages_than_the_limit_are_only_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each invalid message is logged in one line and skipped; the connection goes on."""
    script = Script((*[state(step_seconds=0)] * (MAX_INVALID_MESSAGES - 1), state("IDLE", 1)))
    async with HostileServer(script) as server:
        client = client_for(server.url)
        with caplog.at_level(logging.WARNING, logger="progress_client.client"):
            async with aclosing(client.events()) as events:
                await states_until(events, "IDLE")
        assert server.close_codes in ([], [1000])
    warnings = [r for r in caplog.records if "ignored an invalid message" in r.getMessage()]
    assert len(warnings) == MAX_INVALID_MESSAGES - 1
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in warnings)


async def test_a_broken_server_is_retried_with_a_growing_backoff() -> None:
    """Hello, a state, then invalid messages, on every connection: given up each time,
    and the backoff keeps growing (hello does not reset it) instead of a tight loop."""
    async with HostileServer(CASES["invalid after a valid state"].script) as server:
        client = ProgressClient(
            server.url, policy=ReconnectPolicy(initial=0.01, cap=1.0, random=lambda: 1.0)
        )
        async with aclosing(client.events()) as events:
            waits = [await next_event(events, Waiting) for _ in range(3)]
    assert [wait.attempt for wait in waits] == [2, 3, 4]
    assert [wait.delay for wait in waits] == [0.01, 0.02, 0.04]
    assert all(wait.error.startswith("the server sent invalid messages (") for wait in waits)
    assert (await server.closed(3))[:3] == [1002, 1002, 1002]


async def test_an_unexpected_error_is_a_lost_connection_retried(
    server: ProgressServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while reading a message: logged with its traceback, the connection given up
    (1011) and retried with the backoff; the loop goes on."""
    failures = iter([RuntimeError("boom")])

    def failing_once(data: str | bytes) -> object:
        for failure in failures:
            raise failure
        return decode_server_message(data)

    monkeypatch.setattr(events_module, "decode_server_message", failing_once)
    client = client_for(server.url)
    with caplog.at_level(logging.ERROR, logger="progress_client.client"):
        async with aclosing(client.events()) as events:
            lost = await next_event(events, ConnectionLost)
            waiting = await next_event(events, Waiting)
            await next_event(events, StateReceived)  # connected again
    assert lost.reason == "an unexpected error (RuntimeError: boom)"
    assert waiting.attempt == 2  # counted as a failure
    (record,) = [
        r for r in caplog.records if r.levelno == logging.ERROR and r.name == client_module.__name__
    ]
    assert record.exc_info is not None  # the traceback goes to the log


async def test_abandon_gives_up_the_connection_without_resetting_the_backoff(
    server: ProgressServer,
) -> None:
    """abandon(): closed with 1011, lost with the reason given, retried after a wait."""
    client = client_for(server.url)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        assert server.hub is not None
        (connection,) = server.hub.clients
        client.abandon("the screen could not show it")
        lost = await next_event(events, ConnectionLost)
        waiting = await next_event(events, Waiting)
        await next_event(events, StateReceived)
    assert lost.reason == "the screen could not show it"
    assert waiting.attempt == 2
    assert client.policy.attempts == 1
    await connection.wait_closed()
    assert connection.close_code == 1011


async def test_wss_against_a_plain_port_says_so(server: ProgressServer) -> None:
    """A wss:// URL on a ws:// port: one sentence, no traceback in the log."""
    client = client_for(server.url.replace("ws://", "wss://"), reconnect=False)
    async with aclosing(client.events()) as events:
        closed = await next_event(events, Closed)
    assert closed.reason == NOT_TLS
    assert NOT_TLS == (
        "the TLS handshake failed: the server does not speak TLS on this port (is it ws://?)"
    )


def test_a_cafile_that_is_not_pem_is_refused_with_a_sentence(tmp_path: Path) -> None:
    """The client refuses a --cafile with no certificate before any connection."""
    cafile = tmp_path / "x.txt"
    cafile.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"x\.txt holds no PEM certificate$"):
        ProgressClient("wss://127.0.0.1:1/progress", cafile=str(cafile))


async def test_ws_against_a_tls_port_hints_at_wss(tmp_path: Path) -> None:
    """The other way round, a ws:// URL on a wss:// port: the sentence suggests wss://."""
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    certificate.cert_chain_pems[0].write_to_path(certfile)
    certificate.private_key_pem.write_to_path(keyfile)
    async with ProgressServer(port=0, certfile=str(certfile), keyfile=str(keyfile)) as server:
        client = client_for(server.url.replace("wss://", "ws://"), reconnect=False)
        async with aclosing(client.events()) as events:
            closed = await next_event(events, Closed)
    assert closed.reason == (
        "the server closed the connection before answering the handshake "
        "(is it a wss:// port, or is the server out of resources?)"
    )


async def test_a_server_that_floods_pings_is_given_up() -> None:
    """A server that pings without end and never reads: the client gives the connection
    up at once (pongs would pile up in its memory without bound), says why, and the
    connection does not reset the backoff."""

    async def flood(connection: ServerConnection) -> None:
        await connection.send(hello())
        await connection.send(state())
        connection.transport.pause_reading()  # never reads the pongs
        ping = bytes([0x89, 0])
        with contextlib.suppress(Exception):
            for _ in range(200):
                connection.transport.write(ping * 5000)
                await asyncio.sleep(0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.wait_closed(), TIMEOUT)

    async with serve(flood, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = client_for(f"ws://127.0.0.1:{port}/")
        async with aclosing(client.events()) as events:
            lost = await next_event(events, ConnectionLost)
            waiting = await next_event(events, Waiting)
            await client.close()
    assert lost.reason == "the server sent pings without end"
    assert client.policy.attempts >= 1  # not reset by that connection
    assert waiting.error == lost.reason


async def test_a_server_that_floods_pings_and_reads_the_pongs_is_given_up() -> None:
    """Pings without end from a server that reads every pong: nothing piles up to send,
    so only the count of pings can end it. It pins the one override of websockets'
    private process_event (progress_client/connection.py): if a version of websockets
    stopped calling it, this connection would go on."""

    async def flood(connection: ServerConnection) -> None:
        await connection.send(hello())
        await connection.send(state())
        ping = bytes([0x89, 0])
        with contextlib.suppress(Exception):
            for _ in range(200):
                connection.transport.write(ping * 50)
                await asyncio.sleep(0.001)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.wait_closed(), TIMEOUT)

    async with serve(flood, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = client_for(f"ws://127.0.0.1:{port}/", reconnect=False)
        async with aclosing(client.events()) as events:
            lost = await next_event(events, ConnectionLost)
    assert lost.reason == "the server sent pings without end"


async def test_a_server_that_greets_and_hangs_up_gets_a_growing_backoff() -> None:
    """hello, a state, close; over and over: the waits grow rather than the client
    reconnecting in a tight loop."""

    async def greet_and_hang_up(connection: ServerConnection) -> None:
        await connection.send(hello())
        await connection.send(state())
        await connection.close(1000)

    async with serve(greet_and_hang_up, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = client_for(f"ws://127.0.0.1:{port}/")
        async with aclosing(client.events()) as events:
            for _ in range(4):
                await next_event(events, Waiting)
            await client.close()
    assert client.policy.attempts >= 4


def test_the_url_shown_never_holds_the_token() -> None:
    """A ?token= in the URL is sent, and never shown: events and logs carry client.url."""
    client = ProgressClient("ws://127.0.0.1:1/progress?token=s3cret")
    assert client.url == "ws://127.0.0.1:1/progress?token=<redacted>"
    assert "s3cret" in client._connect_urls[0]


# Several URLs: failover.


def dead_url() -> str:
    return f"ws://127.0.0.1:{free_port()}/progress"


#: A backoff no test can wait out: a test that gets past it was not made to wait.
NEVER = ReconnectPolicy(initial=100, cap=100, random=lambda: 1.0)


async def test_a_dead_first_url_costs_one_attempt_not_the_backoff(
    server: ProgressServer,
) -> None:
    """The first URL refuses the connection: the second is tried at once, and the client
    connects there; url is the current URL."""
    dead = dead_url()
    client = ProgressClient([dead, server.url], policy=NEVER)
    async with aclosing(client.events()) as events:
        assert await anext(events) == Connecting(dead, 1)
        waiting = await anext(events)
        assert isinstance(waiting, Waiting)
        assert (waiting.url, waiting.delay, waiting.attempt) == (server.url, 0.0, 2)
        assert (waiting.error, waiting.permanent) == ("connection refused", False)
        assert await anext(events) == Connecting(server.url, 2)
        assert (await next_event(events, Connected)).url == server.url
        assert client.url == server.url
        await client.close()


async def test_once_every_url_failed_the_backoff_applies() -> None:
    """Two dead URLs, in turn: the first failure moves on at once, the second waits the
    backoff, and the rotation goes on from the first."""
    first, second = dead_url(), dead_url()
    client = ProgressClient(
        [first, second], policy=ReconnectPolicy(initial=0.2, cap=0.2, random=lambda: 1.0)
    )
    async with aclosing(client.events()) as events:
        seen = [await anext(events) for _ in range(6)]
    assert [(type(e).__name__, getattr(e, "url", None)) for e in seen] == [
        ("Connecting", first),
        ("Waiting", second),
        ("Connecting", second),
        ("Waiting", first),
        ("Connecting", first),
        ("Waiting", second),
    ]
    assert [e.delay for e in seen if isinstance(e, Waiting)] == [0.0, 0.2, 0.2]


async def test_a_lost_connection_fails_over_to_the_next_url_at_once() -> None:
    """The server of the live connection goes away: ConnectionLost names it, the next
    URL is tried without a wait, and the client is in sync there."""
    async with ProgressServer(port=0, step_seconds=STEP) as second:
        first = ProgressServer(port=0, step_seconds=STEP)
        await first.start()
        client = ProgressClient([first.url, second.url], policy=NEVER)
        async with aclosing(client.events()) as events:
            await next_event(events, StateReceived)
            await first.close()
            lost = await next_event(events, ConnectionLost)
            waiting = await next_event(events, Waiting)
            connected = await next_event(events, Connected)
            await next_event(events, StateReceived)
            await client.close()
    assert (lost.url, lost.code) == (first.url, 1001)
    assert (waiting.url, waiting.delay, waiting.error) == (second.url, 0.0, lost.reason)
    assert connected.url == client.url == second.url


async def test_a_url_refused_for_good_is_left_out_while_others_remain(
    server: ProgressServer,
) -> None:
    """A 404 from one URL: the others are tried at once and it is never tried again in
    this loop; every URL refused for good stops the loop, one attempt each."""
    async with HostileServer(refusals=[Refusal.error(404, "Wrong.")] * 9) as wrong:
        client = client_for([wrong.url, server.url])
        async with aclosing(client.events()) as events:
            assert (await next_event(events, Waiting)).permanent
            await next_event(events, StateReceived)
            assert server.hub is not None
            for _ in range(2):  # lost twice: the backoff, always on the same URL
                (connection,) = server.hub.clients
                connection.close(1011)
                assert (await next_event(events, Waiting)).url == server.url
                await next_event(events, StateReceived)
            await client.close()
        assert wrong.handshakes == 1

        async with HostileServer(refusals=[Refusal.error(403, "No.")]) as other:
            client = client_for([wrong.url, other.url])
            async with aclosing(client.events()) as events:
                seen = [event async for event in events]
    assert [type(e) for e in seen] == [Connecting, Waiting, Connecting, Closed]
    assert seen[-1] == Closed("the server refused the connection (HTTP 403): No.", permanent=True)


async def test_servers_that_greet_and_hang_up_are_not_hammered_in_turn() -> None:
    """Two URLs whose servers greet and hang up: the first loss moves on at once, then
    every wait is the growing backoff (a short connection does not make a URL new)."""

    async def greet_and_hang_up(connection: ServerConnection) -> None:
        await connection.send(hello())
        await connection.send(state())
        await connection.close(1000)

    async with (
        serve(greet_and_hang_up, "127.0.0.1", 0) as one,
        serve(greet_and_hang_up, "127.0.0.1", 0) as two,
    ):
        urls = [f"ws://127.0.0.1:{s.sockets[0].getsockname()[1]}/" for s in (one, two)]
        client = ProgressClient(
            urls, policy=ReconnectPolicy(initial=0.01, cap=1.0, random=lambda: 1.0)
        )
        async with aclosing(client.events()) as events:
            waits = [await next_event(events, Waiting) for _ in range(4)]
            await client.close()
    assert [wait.url for wait in waits] == [urls[1], urls[0], urls[1], urls[0]]
    assert [wait.delay for wait in waits] == [0.0, 0.01, 0.02, 0.04]


async def test_a_retry_after_holds_back_its_url_only(server: ProgressServer) -> None:
    """A full server asks for 60 s: the next URL is tried at once all the same."""
    async with HostileServer(
        refusals=[Refusal.error(503, "Full.", **{"Retry-After": "60"})]
    ) as full:
        client = ProgressClient([full.url, server.url], policy=NEVER)
        async with aclosing(client.events()) as events:
            waiting = await next_event(events, Waiting)
            await next_event(events, Connected)
            await client.close()
    assert (waiting.url, waiting.delay) == (server.url, 0.0)


async def test_without_reconnect_each_url_is_tried_once(server: ProgressServer) -> None:
    """reconnect=False: a dead first URL, then the second works; every URL dead: one
    attempt each, then Closed with the last reason."""
    client = client_for([dead_url(), server.url], reconnect=False)
    async with aclosing(client.events()) as events:
        await next_event(events, StateReceived)
        await client.close()
    urls = [dead_url(), dead_url()]
    client = client_for(urls, reconnect=False)
    async with aclosing(client.events()) as events:
        seen = [event async for event in events]
    assert [type(e) for e in seen] == [Connecting, Waiting, Connecting, Closed]
    assert seen[-1] == Closed("connection refused")
    assert client.url == urls[1]


def test_several_urls_are_checked_and_shown_without_their_token() -> None:
    """Every URL is checked; the same one twice counts once; none is shown with its
    token; url starts at the first."""
    client = ProgressClient(
        [
            "ws://127.0.0.1:1/progress?token=s3cret",
            "ws://127.0.0.1:2/progress",
            "ws://127.0.0.1:1/progress?token=s3cret",
        ]
    )
    assert client.urls == (
        "ws://127.0.0.1:1/progress?token=<redacted>",
        "ws://127.0.0.1:2/progress",
    )
    assert client.url == client.urls[0]
    with pytest.raises(ValueError, match="is not a WebSocket URL"):
        ProgressClient(["ws://127.0.0.1:1/progress", "http://127.0.0.1:2/"])
    with pytest.raises(ValueError, match="no URL given"):
        ProgressClient([])
