"""Web pages on the same machine: cross-site requests and DNS rebinding are refused.

A browser cannot be told to leave out Origin or to send the Host it did not ask for,
so these requests carry exactly what Chromium and Firefox send: a cross-site form
POST with the page's Origin, a WebSocket handshake with the page's Origin, and after
DNS rebinding, the attacker's own name in both Host and Origin.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from progress_server.server import ProgressServer
from tests.helpers import TIMEOUT, http_request, join, recv_json

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def handshake_refusal(port: int, **headers: str) -> tuple[int, dict[str, Any]]:
    """Open the WebSocket as a browser would, Host included; returns the refusal's status
    and body."""
    headers = {"Host": f"127.0.0.1:{port}", **headers}
    request = "GET /progress HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request += (
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request.encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    body = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    return int(head.split(b" ", 2)[1]), json.loads(body)


async def test_a_page_of_another_site_can_neither_post_nor_connect(
    server: ProgressServer,
) -> None:
    """With the defaults, a form POST /start or /cancel and a WebSocket handshake from
    another origin get 403 forbidden_origin and change nothing."""
    evil = {"Origin": "https://evil.example"}
    for path in ("/start", "/cancel"):
        # fetch(url, {method: "POST", mode: "no-cors"}) needs no preflight and no body.
        status, _, body = await http_request(server.port, "POST", path, headers=evil)
        assert (status, body["code"]) == (403, "forbidden_origin")
        assert "--allow-origin" in body["message"]
    # A form POST has a body: websockets drops such a request unanswered, untouched.
    with pytest.raises(ConnectionError):
        await http_request(server.port, "POST", "/start", headers={**FORM, **evil}, body="x=1")
    status, body = await handshake_refusal(server.port, **evil)
    assert (status, body["code"]) == (403, "forbidden_origin")
    # A sandboxed page or a file:// page sends "null": refused as well.
    status, body = await handshake_refusal(server.port, Origin="null")
    assert status == 403
    _, _, state = await http_request(server.port, "GET", "/state")
    assert state["state"] == "IDLE"


async def test_the_servers_own_origin_and_clients_without_origin_pass(
    server: ProgressServer,
) -> None:
    """A page served from the server's own origin, and progress-tui, progress-ctl or curl
    (which send no Origin), are not cross-site."""
    async with connect(server.url, origin=f"http://127.0.0.1:{server.port}") as ws:
        assert (await recv_json(ws))["type"] == "hello"
    ws, _, _ = await join(server.url)
    await ws.close()
    status, _, _ = await http_request(server.port, "POST", "/start")
    assert status == 202


async def test_allow_origin_star_restores_any() -> None:
    """--allow-origin '*': any page may connect (the operator said so)."""
    async with (
        ProgressServer(port=0, allowed_origins=("*",)) as server,
        connect(server.url, origin="https://evil.example") as ws,
    ):
        assert (await recv_json(ws))["type"] == "hello"


async def test_a_dns_rebinding_page_is_refused(server: ProgressServer) -> None:
    """After rebinding, the attacker's name is in Host and Origin alike, so the origin
    check alone would pass it: on loopback, a Host that is not a loopback name gets 403
    forbidden_host, on the WebSocket and the HTTP API."""
    name = f"rebind.example:{server.port}"
    page = {"Host": name, "Origin": f"http://{name}"}
    status, _, body = await http_request(server.port, "POST", "/start", headers=page)
    assert (status, body["code"]) == (403, "forbidden_host")
    assert "--allow-host" in body["message"]
    status, _, body = await http_request(server.port, "GET", "/state", headers=page)
    assert status == 403
    status, body = await handshake_refusal(server.port, **page)
    assert (status, body["code"]) == (403, "forbidden_host")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "127.0.0.2", "LOCALHOST"])
async def test_loopback_names_pass(server: ProgressServer, host: str) -> None:
    """Every loopback name, with or without the port."""
    for value in (host, f"{host}:{server.port}"):
        status, _, _ = await http_request(server.port, "GET", "/state", headers={"Host": value})
        assert status == 200, value


async def test_allow_host_adds_names() -> None:
    """--allow-host NAME answers to NAME as well (a proxy in front); others still get 403."""
    async with ProgressServer(port=0, allowed_hosts=("progress.internal",)) as server:
        good = {"Host": f"progress.internal:{server.port}"}
        assert (await http_request(server.port, "GET", "/state", headers=good))[0] == 200
        bad = {"Host": "other.internal"}
        assert (await http_request(server.port, "GET", "/state", headers=bad))[0] == 403


async def test_no_host_check_off_loopback() -> None:
    """Listening on every interface, the server answers to any name (a token is the guard
    there), unless --allow-host lists some."""
    async with ProgressServer(host="0.0.0.0", port=0) as server:
        headers = {"Host": "progress.example.com"}
        assert (await http_request(server.port, "GET", "/state", headers=headers))[0] == 200
    async with ProgressServer(host="0.0.0.0", port=0, allowed_hosts=("a.example",)) as server:
        assert (await http_request(server.port, "GET", "/state", headers=headers))[0] == 403


async def test_http_actions_are_rate_limited_per_address() -> None:
    """One address driving start and cancel in a loop gets 429 past the burst; the states
    it could cause are bounded by the rate, as for a WebSocket client."""
    # A step no request outlasts: every change of seq is one of theirs.
    async with ProgressServer(port=0, rate_limit=20, rate_burst=10, step_seconds=3600) as server:
        loop = asyncio.get_running_loop()
        began = loop.time()
        # Ten at a time: 60 one after the other took 3 s on a busy machine, which the
        # rate allows in full.
        answers: list[tuple[int, dict[str, str], Any]] = []
        for first in range(0, 60, 10):
            answers += await asyncio.gather(
                *(
                    http_request(server.port, "POST", "/start" if number % 2 == 0 else "/cancel")
                    for number in range(first, first + 10)
                )
            )
        elapsed = loop.time() - began
        statuses = [status for status, _, _ in answers]
        for status, headers, body in answers:
            if status == 429:
                assert body["code"] == "rate_limited" and headers["retry-after"] == "1"
        accepted = statuses.count(202)
        assert statuses.count(429) > 0, f"no 429 in {elapsed:.2f} s: {statuses}"
        assert accepted <= 10 + 20 * elapsed + 1, f"{accepted} accepted in {elapsed:.2f} s"
        _, _, state = await http_request(server.port, "GET", "/state")
        assert state["seq"] <= accepted  # every refused request changed nothing
