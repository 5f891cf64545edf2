"""progress-tui among several people: who you are, who is watching, what a viewer may
do; driven with Pilot against a real server with a tokens file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import Button
from websockets.asyncio.client import connect

from progress_protocol.states import State
from progress_server.tokens import Tokens, new_token, write_tokens
from progress_tui.app import ProgressApp
from progress_tui.widgets.connection_bar import ConnectionStatusBar
from progress_tui.widgets.key_bar import KeyBar
from tests.helpers import TIMEOUT, SteppedServer, recv_type, send_json
from tests.tui.scripted import eventually, rendered, until
from tests.tui.test_app import connected, log_text, make_app, notified, showing

SIZE = (100, 30)


class People:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tokens = {"alice": new_token(), "bob": new_token()}
        self.file = (
            Tokens()
            .added("alice", "operator", self.tokens["alice"])
            .added("bob", "viewer", self.tokens["bob"])
        )
        write_tokens(path, self.file)

    def revoke(self, name: str) -> None:
        self.file = self.file.revoked(name)
        write_tokens(self.path, self.file)


@pytest.fixture
def people(tmp_path: Path) -> People:
    return People(tmp_path / "tokens")


@pytest.fixture
async def server(people: People) -> AsyncIterator[SteppedServer]:
    async with SteppedServer(tokens_file=str(people.path)) as server:
        yield server


def bar(app: ProgressApp) -> str:
    widget = app.query_one(ConnectionStatusBar)
    return widget.describe(widget.size.width)


def keys(app: ProgressApp) -> dict[str, bool]:
    """The key bar's and the Footer's keys: description -> enabled."""
    shown = {}
    for _, binding, enabled, _ in app.screen.active_bindings.values():
        if binding.show:
            shown[binding.description] = enabled
    return shown


async def test_a_viewer_sees_who_they_are_and_why_they_cannot_act(
    server: SteppedServer, people: People
) -> None:
    """bob, a viewer (who calls himself "laptop"): the status bar says "bob · viewer";
    Start and Cancel are dimmed (keys and buttons); s says why in a notification and
    sends nothing; the operator's run still shows."""
    app = make_app(server.url, token=people.tokens["bob"], name="laptop")
    async with app.run_test(size=SIZE) as pilot:
        made = notified(app)
        await connected(pilot)
        await until(pilot, lambda: "bob · viewer" in bar(app), what="bob · viewer in the bar")
        assert "as bob · viewer" in log_text(app)
        await until(
            pilot,
            lambda: keys(app).get("Start") is False and keys(app).get("Cancel") is False,
            what="Start and Cancel dimmed",
        )
        assert app.query_one("#start", Button).disabled
        # Nobody tells a viewer to press s.
        await until(
            pilot,
            lambda: "an operator can start one" in " ".join(rendered(app, "#details").split()),
            what=lambda: f"the viewer's hint (it says {rendered(app, '#details')!r})",
        )
        await pilot.press("s")
        await until(pilot, lambda: any(m.startswith("Not allowed") for m in made), what="why")
        (said,) = [m for m in made if m.startswith("Not allowed")]
        assert said == (
            "Not allowed: You are a viewer: a viewer may watch but not start. "
            "Ask an operator, or for an operator's token."
        )
        assert server.metrics.messages.labels("start")._value.get() == 0  # nothing sent
        alice = await connect(
            server.url,
            additional_headers={"Authorization": f"Bearer {people.tokens['alice']}"},
            open_timeout=TIMEOUT,
        )
        async with alice:
            await send_json(alice, {"action": "start"})
            await recv_type(alice, "ack")
            await showing(pilot, State.STARTING)
            assert "by alice" in log_text(app)
            await pilot.press("c")
            await until(
                pilot,
                lambda: sum(m.startswith("Not allowed") for m in made) == 2,
                what="c refused too",
            )
            assert app.snapshot is not None and app.snapshot.state is State.STARTING


async def test_the_bar_says_who_is_watching(server: SteppedServer, people: People) -> None:
    """alice's bar names everyone connected, bob marked as a viewer; when bob leaves,
    only alice."""
    app = make_app(server.url, token=people.tokens["alice"])
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await until(pilot, lambda: "1 watching: alice" in bar(app), what="alice alone")
        bob = await connect(
            server.url,
            additional_headers={"Authorization": f"Bearer {people.tokens['bob']}"},
            open_timeout=TIMEOUT,
        )
        async with bob:
            await until(
                pilot,
                lambda: "alice · operator - 2 watching: alice, bob (viewer)" in bar(app),
                what=lambda: f"bob in the bar (it says {bar(app)!r})",
            )
        await until(pilot, lambda: "1 watching: alice" in bar(app), what="bob gone")


async def test_who_fits_every_pane(server: SteppedServer, people: People) -> None:
    """At every size from a 40x12 pane to 250x70 (one app, resized) the bar shows who
    you are and how many watch, on one line, and the key bar keeps its line."""
    app = make_app(server.url, token=people.tokens["bob"])
    async with app.run_test(size=(40, 12)) as pilot:
        await connected(pilot)
        for size in [(40, 12), (60, 20), (80, 24), (120, 36), (250, 70)]:
            await pilot.resize_terminal(*size)
            await until(pilot, lambda: "watching" in bar(app), what="the presence")
            widget = app.query_one(ConnectionStatusBar)

            def one_line(widget: ConnectionStatusBar = widget) -> None:
                text = widget.describe(widget.size.width)
                assert text.startswith("● ") and "bob · viewer" in text, text
                assert "1 watching" in text, text
                assert len(text) <= widget.size.width and widget.size.height == 1, text

            await eventually(pilot, one_line)
            assert app.query_one(KeyBar).size.height in (0, 1)


async def test_a_revoked_viewer_is_told_and_stops(server: SteppedServer, people: People) -> None:
    """bob's token revoked: his TUI says so and stops trying (its token is refused)."""
    app = make_app(server.url, token=people.tokens["bob"])
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        people.revoke("bob")
        await until(
            pilot,
            lambda: "revoked this client's token (4401)" in log_text(app),
            what=lambda: f"the revocation said (the log: {log_text(app)[-300:]!r})",
        )
        await until(
            pilot,
            lambda: app.connection.stopped and "token not accepted (HTTP 401)" in bar(app),
            what=lambda: f"stopped for good (the bar: {bar(app)!r})",
        )


@pytest.mark.parametrize("name", ["a-very-long-name-for-a-laptop", "山田太郎山田太郎山田"])
async def test_a_long_or_wide_name_fits_a_40_column_pane(tmp_path: Path, name: str) -> None:
    """A name of 29 characters, or of wide characters, still leaves the bar one line
    at 40 columns: the name is cut by cells, down to 10 if need be."""
    async with SteppedServer() as server:
        app = make_app(server.url, name=name)
        async with app.run_test(size=(40, 12)) as pilot:
            await connected(pilot)
            await until(pilot, lambda: "watching" in bar(app), what="the presence")
            widget = app.query_one(ConnectionStatusBar)
            assert widget.size.height == 1, bar(app)
            assert "…" in bar(app) and "1 watching" in bar(app)
