"""Who is here, worded: `progress-ctl who` against a real server, and the line the
TUI shows, cut to any width."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from progress_client.wording import person_label, watching, you_are
from progress_protocol.messages import Person, Presence
from progress_server.server import ProgressServer
from progress_server.tokens import Tokens, new_token, write_tokens
from tests.client.test_ctl import run_ctl
from tests.helpers import TIMEOUT, recv_type

ALICE = Person("alice", "operator", ("ctl", "tui"), 2)
BOB = Person("bob", "viewer", ("tui",), 1)
UNNAMED = Person(None, "operator", ("other",), 3)
PRESENCE = Presence((ALICE, BOB, UNNAMED), total=3, connections=6)


def test_the_line_names_everyone_who_fits() -> None:
    """Every named person once, viewers marked, the unnamed counted; what does not fit
    becomes "+N more", down to the count alone."""
    assert watching(PRESENCE) == "5 watching: alice, bob (viewer), 3 unnamed"
    assert watching(PRESENCE, 42) == "5 watching: alice, bob (viewer), 3 unnamed"
    assert watching(PRESENCE, 40) == "5 watching: alice, bob (viewer), +3 more"
    assert watching(PRESENCE, 39) == "5 watching: alice, +4 more"
    assert watching(PRESENCE, 25) == "5 watching"
    assert watching(Presence((), 0, 0)) == "nobody watching"
    many = Presence((ALICE,), total=70, connections=80)  # the server lists 50 at most
    assert watching(many) == "70 watching: alice, +69 more"


def test_names_are_shown_safely_and_short() -> None:
    """A long name is cut with an ellipsis; control characters never reach the screen."""
    long = Person("x" * 64, "viewer", ("tui",), 1)
    assert person_label(long) == "x" * 19 + "… (viewer)"
    assert you_are("alice", "operator") == "alice · operator"
    assert you_are(None, "viewer") == "viewer"
    assert you_are(None, None) == ""


async def test_who_lists_people_and_says_who_you_are(tmp_path: Path) -> None:
    """who: the line, a row a person (role, connections, kinds of client), and who the
    server takes you for; --json prints the presence message."""
    alice, bob = new_token(), new_token()
    path = tmp_path / "tokens"
    write_tokens(path, Tokens().added("alice", "operator", alice).added("bob", "viewer", bob))
    async with ProgressServer(port=0, tokens_file=str(path)) as server:
        watcher = await connect(
            server.url,
            additional_headers={"Authorization": f"Bearer {alice}"},
            user_agent_header="progress-tui/1",
            open_timeout=TIMEOUT,
        )
        async with watcher:
            await recv_type(watcher, "clients")
            code, out, err = await run_ctl("--url", server.url, "--token", bob, "who")
            assert (code, err) == (0, ""), err
            assert out.splitlines() == [
                "2 watching: alice, bob (viewer)",
                "  alice  operator  1 connection  tui",
                "  bob    viewer    1 connection  ctl",
                "you: bob (viewer)",
            ]
            code, out, _ = await run_ctl("--url", server.url, "--token", bob, "who", "--json")
            assert code == 0
            assert json.loads(out)["people"][0] == {
                "name": "alice",
                "role": "operator",
                "clients": ["tui"],
                "connections": 1,
            }


@pytest.mark.parametrize("as_json", [False, True])
async def test_who_without_a_token_names_no_one(server: ProgressServer, as_json: bool) -> None:
    """Without a tokens file, people go by the names they give (--name)."""
    args = ["--url", server.url, "--name", "carol", "who", *(["--json"] if as_json else [])]
    code, out, _ = await run_ctl(*args)
    assert code == 0
    assert ("carol" in out) and ("1 watching" in out or as_json)


def test_wide_names_are_measured_in_cells() -> None:
    """A CJK name takes two cells a character: it is cut by cells, and the line fits
    the width it is given in cells."""
    from progress_client.wording import cells, cut

    wide = Person("山田太郎山田太郎山田太郎", "operator", ("tui",), 1)
    assert cells(wide.name or "") == 24
    assert cells(person_label(wide)) <= 20 and person_label(wide).endswith("…")
    line = watching(Presence((wide, BOB), total=2, connections=2), 30)
    assert cells(line) <= 30
    assert cut("abc", 3) == "abc" and cut("abcd", 3) == "ab…"
