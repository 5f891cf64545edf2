"""Several people, one server: per-user tokens, roles, attribution, revocation, presence."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from progress_server.backends.redis import RedisBackend
from progress_server.logs import LOG_FORMAT, JsonFormatter, SafeFormatter
from progress_server.server import ProgressServer
from progress_server.tokens import Tokens, new_token, write_tokens
from tests.helpers import (
    TIMEOUT,
    Watcher,
    http_request,
    recv_json,
    recv_type,
    send_json,
)

LONG_STEP = 60.0  # a run that lasts longer than any test: states change only on demand


class People:
    """A tokens file with an operator (alice) and a viewer (bob), and their tokens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tokens: dict[str, str] = {}
        self.file = Tokens()

    def add(self, name: str, role: str) -> str:
        token = self.tokens[name] = new_token()
        self.file = self.file.added(name, role, token)
        write_tokens(self.path, self.file)
        return token

    def revoke(self, name: str) -> None:
        self.file = self.file.revoked(name)
        write_tokens(self.path, self.file)


@pytest.fixture
def people(tmp_path: Path) -> People:
    people = People(tmp_path / "tokens")
    people.add("alice", "operator")
    people.add("bob", "viewer")
    return people


@pytest.fixture
async def server(people: People) -> AsyncIterator[ProgressServer]:
    async with ProgressServer(
        port=0, step_seconds=LONG_STEP, tokens_file=str(people.path)
    ) as server:
        yield server


async def joined(
    server: ProgressServer, token: str, *, name: str | None = None, agent: str = "test"
) -> tuple[ClientConnection, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    if name is not None:
        headers["X-Progress-Name"] = name
    ws = await connect(
        server.url, additional_headers=headers, user_agent_header=agent, open_timeout=TIMEOUT
    )
    hello = await recv_json(ws)
    assert hello["type"] == "hello"
    await recv_type(ws, "clients")
    return ws, hello


async def until_logged(
    caplog: pytest.LogCaptureFixture, pattern: str, timeout: float = TIMEOUT
) -> logging.LogRecord:
    """The first record whose message matches, once it is logged (records stay)."""
    async with asyncio.timeout(timeout):
        while True:
            for record in caplog.records:
                if re.search(pattern, record.getMessage()):
                    return record
            await asyncio.sleep(0.01)


async def test_hello_names_the_token_and_its_role(server: ProgressServer, people: People) -> None:
    """With a tokens file, hello says the token's name and role and what it may send."""
    alice, hello = await joined(server, people.tokens["alice"])
    bob, bob_hello = await joined(server, people.tokens["bob"])
    async with alice, bob:
        assert (hello["name"], hello["role"], hello["commands"]) == (
            "alice",
            "operator",
            ["start", "cancel"],
        )
        assert (bob_hello["name"], bob_hello["role"], bob_hello["commands"]) == (
            "bob",
            "viewer",
            [],
        )


async def test_a_viewer_may_watch_but_not_act(server: ProgressServer, people: People) -> None:
    """A viewer's start and cancel, over WebSocket, are refused with `forbidden` and a
    sentence naming the role; nothing changes (the next state anyone sees is the
    operator's start); status and history still answer."""
    alice, _ = await joined(server, people.tokens["alice"])
    bob, _ = await joined(server, people.tokens["bob"])
    async with alice, bob:
        for action in ("start", "cancel"):
            await send_json(bob, {"action": action, "request_id": action})
            error = await recv_type(bob, "error")
            assert (error["code"], error["request_id"]) == ("forbidden", action)
            assert error["message"].startswith("bob is a viewer: a viewer may watch but not ")
        await send_json(bob, {"action": "status"})
        assert (await recv_type(bob, "state"))["seq"] == 0
        await send_json(bob, {"action": "history"})
        assert (await recv_type(bob, "history"))["runs"] == []
        await send_json(alice, {"action": "start"})
        ack = await recv_type(alice, "ack")
        state = await recv_type(bob, "state")
        assert (state["state"], state["seq"]) == ("STARTING", 1)
        assert state["by"] == {"client_id": state["by"]["client_id"], "name": "alice"}
        await send_json(bob, {"action": "cancel"})
        assert (await recv_type(bob, "error"))["code"] == "forbidden"
        await send_json(alice, {"action": "cancel"})
        canceled = await recv_type(bob, "state")
        assert (canceled["state"], canceled["seq"]) == ("CANCELED", 2)
        assert canceled["calculation_id"] == ack["calculation_id"]


async def test_a_viewer_is_refused_over_http(server: ProgressServer, people: People) -> None:
    """POST /start and /cancel with a viewer's token: 403 `forbidden`, nothing
    changed; the operator's token works; GET /state, /history and /presence answer the
    viewer."""
    port = server.port
    bob = {"Authorization": f"Bearer {people.tokens['bob']}"}
    alice = {"Authorization": f"Bearer {people.tokens['alice']}", "X-Progress-Name": "mallory"}
    for path in ("/start", "/cancel"):
        status, _, body = await http_request(port, "POST", path, headers=bob)
        assert (status, body["code"]) == (403, "forbidden")
        assert "bob is a viewer" in body["message"]
    for path in ("/state", "/history", "/presence"):
        status, _, _ = await http_request(port, "GET", path, headers=bob)
        assert status == 200
    status, _, state = await http_request(port, "GET", "/state", headers=bob)
    assert (state["state"], state["seq"]) == ("IDLE", 0)
    status, _, _ = await http_request(port, "POST", "/start", headers=alice)
    assert status == 202
    status, _, state = await http_request(port, "GET", "/state", headers=bob)
    # The name the request claims (mallory) does not change the attribution.
    assert (state["state"], state["by"]["name"]) == ("STARTING", "alice")


async def test_a_spoofed_name_does_not_change_the_attribution(
    server: ProgressServer, people: People, caplog: pytest.LogCaptureFixture
) -> None:
    """A client holding alice's token that calls itself "bob" acts as alice, in the
    state everyone sees, in the history and in presence; the log keeps what it
    claimed."""
    caplog.set_level(logging.INFO, "progress_server")
    ws, hello = await joined(server, people.tokens["alice"], name="bob")
    async with ws:
        assert hello["name"] == "alice"
        await send_json(ws, {"action": "start"})
        state = await recv_type(ws, "state")
        assert state["started_by"]["name"] == "alice"
        await send_json(ws, {"action": "cancel"})
        assert (await recv_type(ws, "history"))["runs"][0]["canceled_by"]["name"] == "alice"
        presence = (await http_request(server.port, "GET", "/presence", headers=auth(people)))[2]
        assert [person["name"] for person in presence["people"]] == ["alice"]
    record = await until_logged(caplog, r"start accepted")
    logged = json.loads(JsonFormatter().format(record))  # what a log shipper reads
    assert (logged["client_name"], logged["claimed_name"], logged["role"]) == (
        "alice",
        "bob",
        "operator",
    )


def client(people: People, name: str, agent: str) -> dict[str, Any]:
    """The options of ``connect`` for ``name``'s client of kind ``agent``."""
    return {
        "additional_headers": auth(people, name),
        "user_agent_header": agent,
        "open_timeout": TIMEOUT,
    }


def auth(people: People, name: str = "bob") -> dict[str, str]:
    return {"Authorization": f"Bearer {people.tokens[name]}"}


async def test_a_revoked_token_is_disconnected_and_refused(
    server: ProgressServer, people: People
) -> None:
    """Revoking bob's token in the file closes his connections with 4401 within a
    second or so; alice stays connected and hears the next change; bob's token is
    refused from then on."""
    alice, _ = await joined(server, people.tokens["alice"])
    bob, _ = await joined(server, people.tokens["bob"])
    async with alice, bob:
        people.revoke("bob")
        await asyncio.wait_for(bob.wait_closed(), TIMEOUT)
        assert (bob.close_code, bob.close_reason) == (4401, "token revoked")
        await send_json(alice, {"action": "start"})
        assert (await recv_type(alice, "state"))["state"] == "STARTING"
        with pytest.raises(InvalidStatus) as refused:
            await joined(server, people.tokens["bob"])
        assert refused.value.response.status_code == 401


async def test_a_changed_role_reconnects_as_the_new_role(
    server: ProgressServer, people: People
) -> None:
    """bob made an operator (a new file with his same token): his connection is closed
    with 1012 and, back, his hello says operator."""
    bob, _ = await joined(server, people.tokens["bob"])
    async with bob:
        people.file = Tokens(
            tuple(
                entry if entry.name != "bob" else type(entry)("bob", "operator", entry.digest)
                for entry in people.file.entries
            )
        )
        write_tokens(people.path, people.file)
        await asyncio.wait_for(bob.wait_closed(), TIMEOUT)
        assert bob.close_code == 1012
    again, hello = await joined(server, people.tokens["bob"])
    async with again:
        assert (hello["role"], hello["commands"]) == ("operator", ["start", "cancel"])


async def test_a_broken_edit_keeps_the_last_good_file(
    server: ProgressServer, people: People, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that does not parse is logged once with the line and why, and the last
    good one stays: alice still connects and acts, nobody is disconnected."""
    caplog.set_level(logging.INFO, "progress_server")
    bob, _ = await joined(server, people.tokens["bob"])
    async with bob:
        people.path.write_text(people.file.render() + "carol admin sha256:xyz\n")
        record = await until_logged(caplog, "tokens file not reloaded")
        assert "line 4: unknown role 'admin'" in record.getMessage()
        alice, hello = await joined(server, people.tokens["alice"])
        async with alice:
            assert hello["name"] == "alice"
            await send_json(alice, {"action": "start"})
            assert (await recv_type(bob, "state"))["state"] == "STARTING"
    assert bob.close_code == 1000  # closed by the test, not by the server
    assert len([r for r in caplog.records if "not reloaded" in r.getMessage()]) == 1


async def test_the_file_holds_no_usable_token(server: ProgressServer, people: People) -> None:
    """The file holds hashes only: neither a token nor anything in the file opens the
    server."""
    text = people.path.read_text()
    for token in people.tokens.values():
        assert token not in text
    for word in set(text.split()):
        status, _, _ = await http_request(
            server.port, "GET", "/state", headers={"Authorization": f"Bearer {word}"}
        )
        assert status == 401
    digest = re.search(r"sha256:([0-9a-f]{64})", text)
    assert digest is not None
    status, _, _ = await http_request(
        server.port, "GET", "/state", headers={"Authorization": f"Bearer {digest.group(1)}"}
    )
    assert status == 401


async def test_no_token_reaches_the_log_or_the_metrics(
    server: ProgressServer, people: People, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens presented in every way (header, query, even in the path) and actions of
    both roles: no log line and no metric holds a token or a person's name; actions
    are counted by role and outcome."""
    caplog.set_level(logging.DEBUG)
    alice, bob = people.tokens["alice"], people.tokens["bob"]
    port = server.port
    await http_request(port, "POST", f"/start?token={alice}")
    await http_request(port, "POST", "/cancel", headers={"Authorization": f"Bearer {bob}"})
    await http_request(port, "GET", f"/nothing/{bob}")
    await http_request(port, "GET", "/state", headers={"Authorization": "Bearer prg_wrong_one"})
    _, _, metrics = await http_request(port, "GET", f"/metrics?token={alice}")
    text = metrics.decode()
    assert 'progress_actions_total{action="start",outcome="accepted",role="operator"} 1.0' in text
    assert 'progress_actions_total{action="cancel",outcome="forbidden",role="viewer"} 1.0' in text
    assert "alice" not in text and "bob" not in text
    # What reaches the log is what its formatters write, as text and as JSON lines.
    text_lines = SafeFormatter(LOG_FORMAT)
    json_lines = JsonFormatter()
    logged = "\n".join(
        text_lines.format(record) + json_lines.format(record) for record in caplog.records
    )
    assert "prg_" not in logged
    for token in (alice, bob):
        assert token not in logged and token[4:20] not in logged


async def test_presence_lists_who_is_connected(server: ProgressServer, people: People) -> None:
    """Everyone connected gets who is here, by name and role, with the kinds of client
    and connections; GET /presence says the same."""
    alice, _ = await joined(server, people.tokens["alice"], agent="progress-tui/1.0")
    alice2, _ = await joined(server, people.tokens["alice"], agent="progress-ctl/1.0")
    bob, _ = await joined(server, people.tokens["bob"], agent="Mozilla/5.0 (X11)")
    async with alice, alice2, bob:
        expected = {
            "type": "presence",
            "total": 2,
            "connections": 3,
            "people": [
                {"name": "alice", "role": "operator", "clients": ["ctl", "tui"], "connections": 2},
                {"name": "bob", "role": "viewer", "clients": ["browser"], "connections": 1},
            ],
        }
        async with asyncio.timeout(TIMEOUT):
            while (await recv_type(alice, "presence")) != expected:
                pass
        _, _, body = await http_request(server.port, "GET", "/presence", headers=auth(people))
        assert body == expected
    async with asyncio.timeout(TIMEOUT):
        while True:  # everyone left: nobody is here
            _, _, body = await http_request(server.port, "GET", "/presence", headers=auth(people))
            if body["connections"] == 0:
                break
            await asyncio.sleep(0.01)
    assert body == {"type": "presence", "total": 0, "connections": 0, "people": []}


async def test_the_shared_token_is_one_operator(tmp_path: Path) -> None:
    """--token keeps working: its holder is an operator going by the name it gives."""
    async with ProgressServer(port=0, token="shared-secret-1") as server:
        ws, hello = await joined(server, "shared-secret-1", name="carol")
        async with ws:
            assert (hello["name"], hello["role"]) == ("carol", "operator")
            await send_json(ws, {"action": "start"})
            assert (await recv_type(ws, "state"))["by"]["name"] == "carol"


async def test_presence_is_the_union_over_instances(
    redis_url: str, redis_prefix: str, people: People, caplog: pytest.LogCaptureFixture
) -> None:
    """Two instances on one redis-server, with the same tokens file: a client of
    either hears everyone, of both; no mismatch of tokens files is logged."""
    caplog.set_level(logging.INFO, "progress_server")
    servers = [
        ProgressServer(
            port=0,
            tokens_file=str(people.path),
            backend=RedisBackend(redis_url, prefix=redis_prefix, step_seconds=LONG_STEP),
        )
        for _ in range(2)
    ]
    for each in servers:
        await each.start()
    try:
        # Watchers keep every message: the union may come with a client's first count.
        alice = Watcher(await connect(servers[0].url, **client(people, "alice", "progress-tui/1")))
        bob = Watcher(await connect(servers[1].url, **client(people, "bob", "progress-ctl/1")))
        for watcher in (alice, bob):
            presence = await watcher.until("presence", connections=2)
            assert [(p["name"], p["clients"]) for p in presence["people"]] == [
                ("alice", ["tui"]),
                ("bob", ["ctl"]),
            ]
        await alice.close()
        after = len(bob.messages)
        presence = await bob.until("presence", after=after, connections=1)
        assert [p["name"] for p in presence["people"]] == ["bob"]
        await bob.close()
    finally:
        for each in servers:
            await each.close()
    assert not [r for r in caplog.records if "different tokens files" in r.getMessage()]


async def test_instances_with_different_files_say_so(
    redis_url: str,
    redis_prefix: str,
    people: People,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An instance whose tokens file differs from another's logs the mismatch, with
    both fingerprints: operators see at once that the files are out of step."""
    caplog.set_level(logging.INFO, "progress_server")
    other = People(tmp_path / "other")
    other.add("carol", "operator")
    servers = [
        ProgressServer(
            port=0,
            tokens_file=str(path),
            backend=RedisBackend(redis_url, prefix=redis_prefix, step_seconds=LONG_STEP),
        )
        for path in (people.path, other.path)
    ]
    for each in servers:
        await each.start()
    try:
        # Said once the difference outlasts an edit's way to every instance (3.5 s).
        record = await until_logged(caplog, "enforce different tokens files", 3 * TIMEOUT)
        message = record.getMessage()
        assert people.file.fingerprint in message and other.file.fingerprint in message
    finally:
        for each in servers:
            await each.close()


def test_a_mismatch_of_files_is_said_only_once_it_lasts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An edit reaches the instances a few hundred ms apart: a difference is logged
    only once it outlasts that (a heartbeat and two looks at the file), once, and its
    end is said too."""
    caplog.set_level(logging.INFO, "progress_server")
    backend = RedisBackend("redis://127.0.0.1:1/0")
    backend.instance = "me"
    backend.tokens_fingerprint = "aaa"
    check = backend._check_fingerprints
    check({"me": "old", "other": "aaa"}, 100.0)  # its own old entry does not count
    check({"me": "aaa", "other": "bbb"}, 100.0)  # the other has not read the edit yet
    check({"me": "aaa", "other": "bbb"}, 102.0)
    assert "different tokens files" not in caplog.text
    check({"me": "aaa", "other": "bbb"}, 104.0)  # still, 4 s on
    check({"me": "aaa", "other": "bbb"}, 106.0)
    warnings = [
        r.getMessage() for r in caplog.records if "different tokens files" in r.getMessage()
    ]
    assert warnings == [
        "the instances sharing this calculation enforce different tokens files (this "
        "one's fingerprint: aaa; other: bbb): give every instance the same file"
    ]
    check({"me": "aaa", "other": "aaa"}, 108.0)
    assert "enforce the same tokens file again" in caplog.text
