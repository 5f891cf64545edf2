"""Who may connect: the token, the allowed origins, and what the log never shows."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from progress_server.server import ProgressServer
from tests.helpers import TIMEOUT, ServerProcess, http_request, join, recv_json

TOKEN = "s3cret-token-4242"


async def refused(url: str, **kwargs: object) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as raised:
        await connect(url, open_timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]
    return raised.value


@pytest.fixture
async def guarded():  # type: ignore[no-untyped-def]
    async with ProgressServer(port=0, token=TOKEN) as server:
        yield server


async def test_without_the_token_the_handshake_gets_401(guarded: ProgressServer) -> None:
    """No token, or a wrong one: HTTP 401 with a sentence saying how to present it."""
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        error = await refused(guarded.url, additional_headers=headers)
        assert error.response.status_code == 401
        body = json.loads(error.response.body)
        assert body["code"] == "unauthorized"
        assert "Authorization: Bearer" in body["message"]
        assert error.response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await refused(guarded.url + "?token=wrong")).response.status_code == 401


async def test_the_token_as_a_header_or_a_query_parameter(guarded: ProgressServer) -> None:
    """Bearer header (scripts) or ?token= (browsers cannot set headers) both let in."""
    async with connect(guarded.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert (await recv_json(ws))["type"] == "hello"
    async with connect(f"{guarded.url}?token={TOKEN}") as ws:
        assert (await recv_json(ws))["type"] == "hello"


async def test_http_endpoints_need_the_token_but_healthz(guarded: ProgressServer) -> None:
    """/state, /start, /cancel: 401 without the token; /healthz stays open."""
    for method, path in [("GET", "/state"), ("POST", "/start"), ("POST", "/cancel")]:
        status, _, body = await http_request(guarded.port, method, path)
        assert (status, body["code"]) == (401, "unauthorized")
    assert (await http_request(guarded.port, "GET", "/healthz"))[0] == 200
    status, _, body = await http_request(guarded.port, "GET", f"/state?token={TOKEN}")
    assert (status, body["state"]) == (200, "IDLE")  # and the refused POST /start did nothing


async def test_the_token_never_reaches_the_log() -> None:
    """Even at debug level, where websockets logs request lines and headers."""
    async with ServerProcess("--log-level", "debug", env={"PROGRESS_TOKEN": TOKEN}) as server:
        async with connect(
            server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}
        ) as ws:
            await recv_json(ws)
        async with connect(f"{server.url}?token={TOKEN}") as ws:
            await recv_json(ws)
        with pytest.raises(InvalidStatus):
            await connect(f"{server.url}?token=wrong-{TOKEN}")
        await http_request(server.port, "GET", f"/state?token={TOKEN}")
        server.signal(15)
        await server.wait()
    log = "\n".join(server.lines)
    assert "GET /progress" in log  # debug lines were there to leak it
    assert TOKEN not in log
    assert "<redacted>" in log


@pytest.mark.parametrize(
    ("args", "env", "warned"),
    [
        (["--host", "0.0.0.0"], {}, True),
        (["--host", "0.0.0.0"], {"PROGRESS_TOKEN": TOKEN}, False),
        (["--host", "127.0.0.1"], {}, False),
    ],
)
async def test_a_public_address_without_a_token_logs_a_warning(
    args: list[str], env: dict[str, str], warned: bool
) -> None:
    """Listening beyond loopback with no token: a WARNING says who can drive it."""
    async with ServerProcess(*args, env=env) as server:
        server.signal(15)
        await server.wait()
    warnings = [line for line in server.lines if "WARNING" in line and "without --token" in line]
    assert bool(warnings) is warned


async def test_a_foreign_origin_gets_403() -> None:
    """--allow-origin: another browser origin is refused, listed and absent ones pass."""
    allowed = ("https://dash.example.com",)
    async with ProgressServer(port=0, allowed_origins=allowed) as server:
        error = await refused(server.url, origin="https://evil.example.com")
        assert error.response.status_code == 403
        assert json.loads(error.response.body)["code"] == "forbidden_origin"
        async with connect(server.url, origin="https://dash.example.com") as ws:
            assert (await recv_json(ws))["type"] == "hello"
        ws, _, _ = await join(server.url)  # no Origin: not a browser
        await ws.close()


async def test_a_foreign_origin_cannot_post_either() -> None:
    """A cross-site form POST /start from a foreign page is refused and starts nothing."""
    async with ProgressServer(port=0, allowed_origins=("https://dash.example.com",)) as server:

        def post() -> int:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
            connection.request("POST", "/start", headers={"Origin": "https://evil.example.com"})
            status = connection.getresponse().status
            connection.close()
            return status

        assert await asyncio.to_thread(post) == 403
        _, _, state = await http_request(server.port, "GET", "/state")
        assert state["state"] == "IDLE"
