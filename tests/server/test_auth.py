"""Who may connect: the token, the allowed origins, and what the log never shows."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import uuid
from urllib.parse import unquote

import pytest
import redis.asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from progress_protocol.urls import safe_url
from progress_server.redaction import PATH_LIMIT, escape_controls, redact, safe_path
from progress_server.server import ProgressServer
from tests.helpers import (
    TIMEOUT,
    ServerProcess,
    free_port,
    http_request,
    join,
    recv_json,
    recv_type,
)

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


async def raw_request(port: int, data: bytes) -> bytes:
    """Send raw bytes as a request; returns whatever comes back before the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_the_token_never_reaches_the_log() -> None:
    """A whole session at debug level, where websockets logs request lines, headers and
    the tracebacks of malformed requests: every way of presenting the token, right or
    wrong, in clear or percent-encoded, and the token appears nowhere in the log."""
    wrong = "wrong-secret-9876"
    encoded = "".join(f"%{ord(c):02x}" for c in TOKEN)  # every character percent-encoded
    async with ServerProcess("--log-level", "debug", env={"PROGRESS_TOKEN": TOKEN}) as server:
        async with connect(
            server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}
        ) as ws:
            await recv_json(ws)
        for query in (
            f"token={TOKEN}",
            f"tok%65n={TOKEN}",
            f"token={encoded}",
            f"x=1&token={TOKEN}",
        ):
            async with connect(f"{server.url}?{query}") as ws:
                await recv_json(ws)
        for query in (f"token={wrong}", f"TOKEN={wrong}", f"tok%65n={wrong}"):
            with pytest.raises(InvalidStatus):
                await connect(f"{server.url}?{query}")
        with pytest.raises(InvalidStatus):
            await connect(server.url, additional_headers={"Authorization": f"Bearer {wrong}"})
        await http_request(server.port, "GET", f"/state?token={TOKEN}")
        await http_request(
            server.port, "POST", "/start", headers={"Authorization": f"bearer {TOKEN}"}
        )
        await http_request(server.port, "GET", f"/nothing-here?tok%65n={TOKEN}")
        # Malformed requests end in websockets' debug tracebacks, which quote them.
        for bad in (
            f"GET /progress?token={TOKEN} HTTP/1.1 extra\r\n\r\n",
            f"GET /progress?token={TOKEN} HTTP/1.0\r\n\r\n",
            f"GET /progress HTTP/1.1\r\nAuthorization Bearer {TOKEN}\r\n\r\n",
            f"GET /progress?token={TOKEN}\xff HTTP/1.1\r\nHost: x\r\n\r\n",
            f"BREW /progress?tok%65n={TOKEN} HTCPCP/1.0\r\n\r\n",
        ):
            await raw_request(server.port, bad.encode("latin-1"))
        server.signal(15)
        await server.wait()
    log = "\n".join(server.lines)
    assert "GET /progress" in log  # debug lines were there to leak it
    assert "Traceback" in log  # and so were tracebacks
    for secret in (TOKEN, wrong, encoded, encoded.upper()):
        assert secret not in log, secret
    assert "<redacted>" in log


async def test_control_characters_from_a_peer_are_escaped_in_the_log() -> None:
    """A path or header with ESC or CR cannot forge a log line or drive a terminal: they
    are written as escapes."""
    async with ServerProcess("--log-level", "debug") as server:
        await raw_request(server.port, b"GET /x\x1b[2J\rFAKE HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await raw_request(
            server.port,
            b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Evil: a\x1b]0;pwned\x07b\r\n\r\n",
        )
        await http_request(server.port, "GET", "/nothing%1b%5b2J")
        server.signal(15)
        await server.wait()
    raw = "\n".join(server.lines)
    assert "\x1b" not in raw and "\r" not in raw and "\x07" not in raw
    assert "\\x1b" in raw  # shown, escaped


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


@pytest.mark.parametrize(
    ("target", "host", "status"),
    [
        ("http://evil.example/state", "127.0.0.1", 403),
        ("http://evil.example:80/progress", "localhost", 403),  # the WebSocket's path
        ("HTTP://user@evil.example/start", "[::1]", 403),
        ("http://127.0.0.1/state", "evil.example", 200),
        ("http://localhost:1/state?x=1", "evil.example", 200),
    ],
)
async def test_an_absolute_form_target_names_the_host(
    server: ProgressServer, target: str, host: str, status: int
) -> None:
    """RFC 9112, section 3.2.2: the authority of an absolute-form target
    (``GET http://name/state``) replaces Host, so the Host check applies to it: a
    foreign name there is refused 403 whatever Host says; a loopback one passes."""
    method = "POST" if target.endswith("/start") else "GET"
    request = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    head, _, body = (await raw_request(server.port, request.encode())).partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    if status == 403:
        assert json.loads(body)["code"] == "forbidden_host"
        assert b"evil.example" in body
    assert server.hub is not None and server.hub.snapshot.seq == 0  # nothing started


@pytest.mark.parametrize(
    "line",
    [
        "GET /progress?token=abc HTTP/1.1",
        "GET /progress?tok%65n=abc HTTP/1.1",
        "GET /progress?x=1&TOKEN=abc",
        "> Authorization: Bearer abc",
        "ValueError: invalid HTTP request line: b'GET /?token=abc HTTP/1.1 x'",
    ],
)
def test_redact_hides_the_value(line: str) -> None:
    """Whatever the spelling, the value after the token's name is gone."""
    assert "abc" not in redact(line)
    assert "<redacted>" in redact(line)


def test_redact_hides_a_known_secret_anywhere() -> None:
    """The server's own token, in clear or percent-encoded, wherever it shows up."""
    secret = "a/b+c d"
    for form in (secret, "a%2Fb%2Bc%20d", "a%2Fb%2Bc+d"):
        assert form not in redact(f"X-Whatever: {form}", secrets=(secret,))


def test_redact_leaves_other_parameters_alone() -> None:
    assert redact("GET /state?tokens=1&mytoken=2") == "GET /state?tokens=1&mytoken=2"


def test_escape_controls() -> None:
    """ESC, CR, BEL and C1 become escapes; newlines only when asked to keep them."""
    assert escape_controls("a\x1b[2J\rb\x07\x9b") == "a\\x1b[2J\\rb\\x07\\x9b"
    assert escape_controls("one\ntwo") == "one\\ntwo"
    assert escape_controls("one\ntwo\x1b", keep_newlines=True) == "one\ntwo\\x1b"
    # Bidi overrides and other format characters would reorder what the terminal shows.
    assert escape_controls("bye\u202eevil") == "bye\\u202eevil"
    assert escape_controls("plain text, Zoë") == "plain text, Zoë"


def test_redact_leaves_the_challenge_alone() -> None:
    """The 401's 'WWW-Authenticate: Bearer realm="progress"' holds no secret."""
    line = '> WWW-Authenticate: Bearer realm="progress"'
    assert redact(line) == line


def spellings(secret: str) -> dict[str, str]:
    """The secret percent-encoded in the ways a peer (or a mistake) may spell it."""
    return {
        "mixed case": "".join(
            f"%{ord(c):02X}" if i % 2 else f"%{ord(c):02x}" for i, c in enumerate(secret)
        ),
        "partly": f"%{ord(secret[0]):02x}{secret[1:-1]}%{ord(secret[-1]):02X}",
        "twice": "".join(f"%25{ord(c):02x}" for c in secret),
    }


def assert_nowhere(secret: str, text: str) -> None:
    """Not 8 characters in a row of ``secret`` in ``text``, however often decoded."""
    decoded = unquote(unquote(unquote(text)))
    for start in range(len(secret) - 7):
        assert secret[start : start + 8] not in decoded, secret[start : start + 8]


@pytest.mark.parametrize("spelling", ["mixed case", "partly", "twice"])
def test_redact_hides_the_token_however_it_is_spelled(spelling: str) -> None:
    """Percent-encoded in any way, in a path, a query, a header, or cut short in a
    sentence that quotes 40 characters of it: the token is hidden."""
    form = spellings(TOKEN)[spelling]
    for line in (
        f"HTTP GET /nope/{form} -> 404",
        f"< GET /state?x=1&y={form} HTTP/1.1",
        f"< X-Progress-Name: {form}",
        f"client 0a1b2c: error unknown_action: Unknown action {json.dumps(form[:40] + '...')}",
    ):
        assert_nowhere(TOKEN, redact(line, secrets=(TOKEN,)))
        assert "<redacted>" in redact(line, secrets=(TOKEN,))


def test_redact_hides_any_8_characters_of_the_token_in_a_row() -> None:
    """A piece of the token (websockets' debug line of a long frame keeps its two ends
    only) is hidden wherever it is cut; a shorter token only whole."""
    for start in range(len(TOKEN) - 7):
        piece = TOKEN[start : start + 8]
        assert redact(f"< TEXT '...{piece}\"}}' [80 bytes]", secrets=(TOKEN,)) == (
            "< TEXT '...<redacted>\"}' [80 bytes]"
        )
    assert redact("t0k3n t0k t0k3n", secrets=("t0k3n",)) == "<redacted> t0k <redacted>"


def test_redact_hides_basic_credentials() -> None:
    """Basic credentials are hidden like Bearer ones, whatever they encode."""
    basic = base64.b64encode(f"alice:{TOKEN}".encode()).decode()
    assert redact(f"< Authorization: Basic {basic}") == "< Authorization: Basic <redacted>"
    line = '> WWW-Authenticate: Basic realm="progress"'
    assert redact(line) == line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://<redacted>@127.0.0.1:6379/0"),
        ("rediss://alice:pw@redis.example/0", "rediss://<redacted>@redis.example/0"),
        ("redis://h:6379/0?password=pw&db=1", "redis://h:6379/0?password=<redacted>&db=1"),
        ("redis://h/0?PassWord=pw", "redis://h/0?PassWord=<redacted>"),
        ("redis://h/0?pass%77ord=pw", "redis://h/0?pass%77ord=<redacted>"),
        ("redis://h/0?pass%2577ord=pw", "redis://h/0?pass%2577ord=<redacted>"),
        (
            "redis://h/0?TOKEN=pw;access_token=pw",
            "redis://h/0?TOKEN=<redacted>;access_token=<redacted>",
        ),
        ("redis://h/0#access-token=pw", "redis://h/0#access-token=<redacted>"),
        ("redis://h/0?password=p@ss", "redis://h/0?password=<redacted>"),
        ("redis://:p@ss/w?rd@h/0", "redis://<redacted>@h/0"),
        ("alice:pw@h:6379", "<redacted>@h:6379"),
        ("rediss://[::1:6379/0?password=pw", "rediss://[::1:6379/0?password=<redacted>"),
        ("redis://h:6379/0?db=1&client_name=pw", "redis://h:6379/0?db=1&client_name=pw"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_safe_url_hides_every_credential(url: str, shown: str) -> None:
    """The userinfo, and the value of a password, token or access_token parameter of
    any case or encoding, are hidden; the rest is shown as it was; nothing raises."""
    assert safe_url(url) == shown


def test_safe_path_shows_a_bounded_decoded_path_without_the_token() -> None:
    """A request target is logged by its path only, decoded, the token masked, cut short."""
    for form in spellings(TOKEN).values():
        assert safe_path(f"/nope/{form}?token={TOKEN}", secrets=(TOKEN,)) == "/nope/<redacted>"
    assert safe_path("/state?x=1") == "/state"
    long = safe_path("/" + "a" * 10_000)
    assert len(long) == PATH_LIMIT + 3 and long.endswith("...")


#: A token that holds percent escapes of its own: it is to be hidden as written, and
#: not only once decoded.
ESCAPED_TOKEN = "Zq%2Fx9%3Dk%40Lm"


def test_a_token_holding_percent_escapes_is_hidden_as_written() -> None:
    """The lines a server writes quoting a peer's input (a Host, a method, an unknown
    action), with a token that holds "%2F" itself: not 8 characters of it are left."""
    for line in (
        f"refused a request from 127.0.0.1:5000 for /state: the Host {ESCAPED_TOKEN!r}",
        f"HTTP BREW{ESCAPED_TOKEN} -> 401",
        f'client 0123abcd: error unknown_action: Unknown action "{ESCAPED_TOKEN}"',
        f"a name {ESCAPED_TOKEN[:9]} cut short",
    ):
        shown = redact(line, secrets=(ESCAPED_TOKEN,))
        assert "<redacted>" in shown, shown
        for start in range(len(ESCAPED_TOKEN) - 7):
            assert ESCAPED_TOKEN[start : start + 8] not in shown, shown


async def test_a_token_holding_percent_escapes_never_reaches_the_log() -> None:
    """End to end, at debug level: a token with escapes of its own, quoted by the peer
    as a Host, a method and an action, is in no line of the log as written."""
    bearer = {"Authorization": f"Bearer {ESCAPED_TOKEN}"}
    args = ("--log-level", "debug")
    async with ServerProcess(*args, env={"PROGRESS_TOKEN": ESCAPED_TOKEN}) as server:
        await http_request(server.port, "GET", "/state", headers={"Host": ESCAPED_TOKEN})
        await http_request(server.port, f"BREW{ESCAPED_TOKEN}", "/state")
        async with connect(server.url, additional_headers=bearer) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"action": ESCAPED_TOKEN}))
            assert (await recv_type(ws, "error"))["code"] == "unknown_action"
        server.signal(15)
        await server.wait()
    log = "\n".join(server.lines)
    assert "Unknown action" in log  # the line that could leak it is there
    for start in range(len(ESCAPED_TOKEN) - 7):
        assert ESCAPED_TOKEN[start : start + 8] not in log


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_the_token_in_any_spelling_never_reaches_the_log(log_format: str) -> None:
    """At debug level, in either format: the token percent-encoded in mixed case, partly
    or twice, in a path, in another query parameter, in X-Progress-Name, inside Basic
    credentials, and as an unknown action (whose error sentence quotes 40 characters of
    it): no 8 characters of it reach the log, however often the log is decoded."""
    forms = spellings(TOKEN)
    basic = base64.b64encode(f"alice:{TOKEN}".encode()).decode()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    args = ("--log-level", "debug", "--log-format", log_format)
    async with ServerProcess(*args, env={"PROGRESS_TOKEN": TOKEN}) as server:
        for form in forms.values():
            await http_request(server.port, "GET", f"/nope/{form}", headers=bearer)
            await http_request(server.port, "GET", f"/state?x=1&y={form}", headers=bearer)
            await http_request(
                server.port, "POST", "/cancel", headers={**bearer, "X-Progress-Name": form}
            )
        status, _, _ = await http_request(
            server.port, "GET", "/state", headers={"Authorization": f"Basic {basic}"}
        )
        assert status == 401
        name = {"X-Progress-Name": forms["partly"]}
        async with connect(server.url, additional_headers={**bearer, **name}) as ws:
            await recv_json(ws)
            for action in (*forms.values(), TOKEN):
                await ws.send(json.dumps({"action": action}))
                assert (await recv_type(ws, "error"))["code"] == "unknown_action"
        server.signal(15)
        await server.wait()
    log = "\n".join(server.lines)
    assert_nowhere(TOKEN, log)
    assert basic not in log
    assert "HTTP GET /nope/<redacted> -> 404" in log  # the lines that could leak it are there
    assert "Unknown action" in log and "Authorization: Basic <redacted>" in log


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_redis_password_in_the_url_never_reaches_the_log(
    redis_url: str, redis_prefix: str, log_format: str
) -> None:
    """A Redis password given as a query parameter (redis-py decodes the name:
    ``pass%77ord=`` is ``password=``) is hidden in the lines that show the URL."""
    user, password = f"progress-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    admin = redis.asyncio.from_url(redis_url)
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    url = f"{redis_url}?username={user}&pass%77ord={password}"
    args = ("--redis-url", url, "--redis-prefix", redis_prefix, "--log-format", log_format)
    try:
        async with ServerProcess(*args) as server:
            server.signal(15)
            assert await server.wait() == 0
    finally:
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()
    log = "\n".join(server.lines)
    assert "sharing the calculation through Redis at" in log
    assert password not in log


async def test_a_redis_password_is_not_in_the_sentence_that_ends_the_server() -> None:
    """Redis out of reach at startup: the sentence on stderr hides the password."""
    password = f"pw-{uuid.uuid4().hex}"
    server = ServerProcess("--redis-url", f"redis://127.0.0.1:{free_port()}/0?password={password}")
    with pytest.raises(RuntimeError):
        await server.start()
    assert await server.wait() == 1
    assert any("cannot reach Redis at" in line for line in server.lines), server.lines
    assert password not in "\n".join(server.lines)
