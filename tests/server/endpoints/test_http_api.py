"""The HTTP API on the WebSocket port, with real HTTP requests."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from progress_server.server import ProgressServer
from progress_server.transport.connection import GuardedConnection
from tests.helpers import (
    STEP,
    TIME_FACTOR,
    TIMEOUT,
    HeldBackend,
    SteppedServer,
    http_request,
    join,
    recv_type,
    states_until,
)
from tests.raw import open_socket, read_to_end


async def test_healthz(server: ProgressServer) -> None:
    """GET /healthz answers 200 {"status": "ok"} in JSON."""
    status, headers, body = await http_request(server.port, "GET", "/healthz")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert body == {"status": "ok"}


async def test_state_is_the_state_message(server: ProgressServer) -> None:
    """GET /state answers the same object a WebSocket client gets."""
    ws, _, ws_state = await join(server.url)
    async with ws:
        status, _, body = await http_request(server.port, "GET", "/state")
    assert status == 200
    assert body == ws_state


async def test_start_then_cancel_over_http_is_broadcast() -> None:
    """POST /start answers 202 with the ack; WebSocket clients see the run; POST /cancel ends it."""
    async with ProgressServer(port=0, step_seconds=1.0 * TIME_FACTOR) as server:
        await _start_then_cancel(server)


async def _start_then_cancel(server: ProgressServer) -> None:
    ws, _, _ = await join(server.url)
    async with ws:
        status, _, ack = await http_request(server.port, "POST", "/start")
        assert status == 202
        assert ack["type"] == "ack" and ack["action"] == "start"
        starting = await recv_type(ws, "state")
        assert starting["state"] == "STARTING"
        assert starting["calculation_id"] == ack["calculation_id"]

        status, _, state = await http_request(server.port, "GET", "/state")
        assert state["calculation_id"] == ack["calculation_id"]
        assert state["state"] in ("STARTING", "IN_PROGRESS", "ALMOST_DONE")

        status, _, ack = await http_request(server.port, "POST", "/cancel")
        assert status == 202
        assert ack["action"] == "cancel"
        assert (await states_until(ws, "CANCELED"))[-1]["calculation_id"] == ack["calculation_id"]


async def test_start_while_running_is_409(stepped: SteppedServer) -> None:
    """A second POST /start gets 409 with the already_running error; the run goes on."""
    _, _, first = await http_request(stepped.port, "POST", "/start")
    status, _, error = await http_request(stepped.port, "POST", "/start")
    assert status == 409
    assert error["type"] == "error"
    assert error["code"] == "already_running"
    assert error["message"].endswith(".")
    _, _, state = await http_request(stepped.port, "GET", "/state")
    assert state["calculation_id"] == first["calculation_id"]


async def test_cancel_when_nothing_runs_is_409(server: ProgressServer) -> None:
    """POST /cancel while IDLE gets 409 not_running; the state stays IDLE."""
    status, _, error = await http_request(server.port, "POST", "/cancel")
    assert status == 409
    assert error["code"] == "not_running"
    _, _, state = await http_request(server.port, "GET", "/state")
    assert state["state"] == "IDLE"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/state", "GET, HEAD"),
        ("GET", "/start", "POST"),
        ("PUT", "/cancel", "POST"),
        ("POST", "/progress", "GET"),
    ],
)
async def test_wrong_method_is_405(
    server: ProgressServer, method: str, path: str, allowed: str
) -> None:
    """A wrong method gets 405 with an Allow header and a sentence; nothing starts."""
    status, headers, error = await http_request(server.port, method, path)
    assert status == 405
    assert headers["allow"] == allowed
    assert error["code"] == "method_not_allowed"
    assert allowed in error["message"]
    _, _, state = await http_request(server.port, "GET", "/state")
    assert state["state"] == "IDLE"


@pytest.mark.parametrize("path", ["/", "/nope", "/progress/extra", "/states"])
async def test_unknown_path_is_404(server: ProgressServer, path: str) -> None:
    """Any other path gets 404, naming the endpoints that exist."""
    status, _, error = await http_request(server.port, "GET", path)
    assert status == 404
    assert error["code"] == "not_found"
    assert "/progress" in error["message"]


async def test_query_strings_are_ignored(server: ProgressServer) -> None:
    """/state?x=1 is /state."""
    status, _, body = await http_request(server.port, "GET", "/state?pretty=1")
    assert status == 200
    assert body["type"] == "state"


async def test_plain_get_on_the_websocket_path_is_426(server: ProgressServer) -> None:
    """A browser-style GET on /progress is told to upgrade."""
    status, headers, _ = await http_request(server.port, "GET", "/progress")
    assert status == 426
    assert headers["upgrade"] == "websocket"


async def test_a_request_then_a_half_close_still_gets_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """POST /start, then FIN (legal in HTTP/1.1: `nc -N`, some proxies) while the start
    waits on the store: the start is performed and answered 202, then the server closes."""
    eof_seen = asyncio.Event()
    eof_received = GuardedConnection.eof_received

    def noting_eof(connection: GuardedConnection) -> bool | None:
        try:
            return eof_received(connection)
        finally:
            eof_seen.set()

    monkeypatch.setattr(GuardedConnection, "eof_received", noting_eof)
    backend = HeldBackend(step_seconds=STEP)
    async with ProgressServer(port=0, backend=backend) as server:
        sock = await open_socket(server.port)
        request = b"POST /start HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        await asyncio.get_running_loop().sock_sendall(sock, request)
        sock.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(eof_seen.wait(), TIMEOUT)
        assert "start done" not in backend.events  # the FIN came first
        backend.release.set()
        response = await read_to_end(sock)
        sock.close()
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 202"), response
        ack = json.loads(body)
        assert ack["type"] == "ack" and ack["action"] == "start"
        assert (await backend.snapshot()).calculation_id == ack["calculation_id"]
