"""progress-tui driven with Pilot against real servers on free ports."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import AsyncIterator, Callable

import pytest
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import Button, Label

from progress_client.client import NOT_TLS
from progress_client.reconnect import ReconnectPolicy
from progress_protocol.states import State, StateSnapshot
from progress_server.server import ProgressServer
from progress_tui.app import ProgressApp
from progress_tui.run import RunView
from progress_tui.widgets import ConnectionStatusBar, EventLog, StateBanner
from tests.client.hostile import CASES, HostileServer
from tests.helpers import TIME_FACTOR, TIMEOUT, ServerProcess, free_port

#: Steps long enough for a key press to land inside a given state.
APP_STEP = 0.5 * TIME_FACTOR
CAP = 0.5 * TIME_FACTOR
SIZE = (100, 30)


@pytest.fixture
async def server() -> AsyncIterator[ProgressServer]:
    async with ProgressServer(port=0, step_seconds=APP_STEP) as running:
        yield running


def make_app(url: str, **kwargs: object) -> ProgressApp:
    return ProgressApp(url, policy=ReconnectPolicy(initial=0.05, cap=CAP), **kwargs)  # type: ignore[arg-type]


async def until(
    pilot: Pilot[None], predicate: Callable[[], bool], timeout: float = TIMEOUT
) -> None:
    """Let the app run until `predicate` holds; fails the test after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        await pilot.pause(0.01)


def state_of(app: ProgressApp) -> State | None:
    return app.run_view.state if app.run_view else None


def log_text(app: ProgressApp) -> str:
    """The event log as one line of text (long entries wrap on screen)."""
    return " ".join(" ".join(line.text.split()) for line in app.query_one(EventLog).lines)


def toasts(app: ProgressApp) -> list[str]:
    """The notifications on screen now (Textual keeps toasts outside the DOM queries)."""
    return [f"{n.title}: {n.message}" for n in app._notifications]


def bar_text(app: ProgressApp) -> str:
    return app.query_one(ConnectionStatusBar).describe()


COUNTDOWN = re.compile(r"Reconnecting in \d+\.\ds \(attempt (\d+)\) - ")


def reconnect_attempt(app: ProgressApp) -> int:
    """The attempt the bar counts down to; 0 while it says something else (Connecting)."""
    match = COUNTDOWN.search(bar_text(app))
    return int(match.group(1)) if match else 0


async def connected(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, ProgressApp)
    await until(pilot, lambda: app.connected and app.run_view is not None)


async def test_s_runs_through_every_state_to_success(server: ProgressServer) -> None:
    """s starts a calculation; the screen goes through each state and ends on SUCCESS."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("s")
        await until(pilot, lambda: state_of(app) is State.SUCCESS)
        states = re.findall(r"\b(IDLE|STARTING|IN_PROGRESS|ALMOST_DONE|SUCCESS)\b", log_text(app))
        assert states == [
            "IDLE",
            "STARTING",
            "IN_PROGRESS",
            "ALMOST_DONE",
            "SUCCESS",
        ]
        banner = str(app.query_one(StateBanner).render())
        assert "✔ SUCCESS" in banner
        assert app.query_one(StateBanner).has_class("-success")


async def test_c_during_in_progress_ends_on_canceled(server: ProgressServer) -> None:
    """c while IN_PROGRESS cancels: the screen ends on CANCELED, marked as such."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("s")
        await until(pilot, lambda: state_of(app) is State.IN_PROGRESS)
        await pilot.press("c")
        await until(pilot, lambda: state_of(app) is State.CANCELED)
        assert app.run_view is not None and app.run_view.reached is State.IN_PROGRESS
        await pilot.pause(2 * APP_STEP)
        assert state_of(app) is State.CANCELED
        assert "✘ CANCELED" in str(app.query_one(StateBanner).render())
        assert app.query_one(StateBanner).has_class("-canceled")


async def test_s_while_running_sends_no_second_start() -> None:
    """While a calculation runs, s and the Start button send nothing; no error appears."""
    async with ProgressServer(port=0, step_seconds=2.0 * TIME_FACTOR) as server:
        app = make_app(server.url)
        sent: list[str] = []
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            send = app.client.send

            async def counting_send(action):  # type: ignore[no-untyped-def]
                sent.append(action)
                return await send(action)

            app.client.send = counting_send  # type: ignore[method-assign]
            await pilot.press("s")
            await until(pilot, lambda: state_of(app) is State.STARTING and app.pending is None)
            await pilot.press("s", "s")
            await pilot.click("#start")
            await pilot.pause(0.1)
            assert state_of(app) in (State.STARTING, State.IN_PROGRESS)  # still running
            assert sent == ["start"]
            assert not [text for text in toasts(app) if "already" in text]


async def test_controls_follow_the_state(server: ProgressServer) -> None:
    """Start only when idle or done; Cancel only while running; Footer dims the others."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        start, cancel = app.query_one("#start", Button), app.query_one("#cancel", Button)
        assert (start.disabled, cancel.disabled) == (False, True)
        assert (app.check_action("start", ()), app.check_action("cancel", ())) == (True, None)
        await pilot.click("#start")
        await until(pilot, lambda: app.running and app.pending is None)
        assert state_of(app) is State.STARTING
        assert (start.disabled, cancel.disabled) == (True, False)
        assert (app.check_action("start", ()), app.check_action("cancel", ())) == (None, True)
        await pilot.click("#cancel")
        await until(pilot, lambda: state_of(app) is State.CANCELED)
        assert (start.disabled, cancel.disabled) == (False, True)


async def test_pending_action_disables_the_controls_until_answered(server: ProgressServer) -> None:
    """Right after s, both controls are disabled and the spinner turns."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await app.action_start()  # sent; the answer has not been read yet
        assert app.pending == "start"
        assert app.query_one("#start", Button).disabled
        assert app.query_one("#cancel", Button).disabled
        assert app.query_one("Spinner").active  # type: ignore[attr-defined]
        await until(pilot, lambda: app.pending is None)


async def test_no_answer_brings_the_controls_back_with_an_error() -> None:
    """A server that stops answering: after the timeout, a notification; controls return."""
    async with ServerProcess() as server:
        app = make_app(server.url, pending_timeout=0.3 * TIME_FACTOR)
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            server.signal(signal.SIGSTOP)
            try:
                await pilot.press("s")
                assert app.pending == "start"
                await until(pilot, lambda: app.pending is None)
                await until(
                    pilot,
                    lambda: any("No answer from the server to start" in t for t in toasts(app)),
                )
                assert not app.query_one("#start", Button).disabled
            finally:
                server.signal(signal.SIGCONT)


async def test_disconnected_disables_everything_and_marks_the_state_stale() -> None:
    """No server: Start and Cancel disabled, the last state dimmed and marked stale."""
    port = free_port()
    server = ProgressServer(port=port, step_seconds=APP_STEP)
    await server.start()
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await server.close()
        await until(pilot, lambda: not app.connected)
        assert app.query_one("#start", Button).disabled
        assert app.query_one("#cancel", Button).disabled
        assert app.check_action("start", ()) is None
        banner = app.query_one(StateBanner)
        assert banner.has_class("-stale")
        assert "stale" in str(banner.render())
        assert "IDLE" in str(banner.render())


async def test_server_error_becomes_a_notification(server: ProgressServer) -> None:
    """The server's error sentence is shown as an error notification."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await app.client.send("cancel")  # nothing runs: the server refuses
        await until(pilot, lambda: any("no running calculation" in t for t in toasts(app)))
        assert "Refused: There is no running calculation" in log_text(app)


async def test_reconnects_with_a_countdown_and_resyncs() -> None:
    """Server stopped: countdown and attempt in the bar; server back: connected, resynced."""
    port = free_port()
    first = ProgressServer(port=port, step_seconds=APP_STEP)
    await first.start()
    app = make_app(first.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("s")
        await until(pilot, lambda: state_of(app) is State.STARTING)
        await first.close()
        await until(pilot, lambda: reconnect_attempt(app) >= 2)
        assert "going away (1001)" in log_text(app)
        assert app.query_one(ConnectionStatusBar).has_class("-reconnecting")

        async with ProgressServer(port=port, step_seconds=APP_STEP):
            await until(pilot, lambda: app.connected, timeout=CAP + TIMEOUT / 5)
            await until(pilot, lambda: state_of(app) is State.IDLE)
            assert not app.query_one(StateBanner).has_class("-stale")
            assert bar_text(app).startswith(f"● Connected to {first.url} - 1 client")
            await pilot.press("q")


async def test_two_apps_see_the_same_sequence(server: ProgressServer) -> None:
    """Two terminals on one server: both show the same states, in the same order."""
    one, two = make_app(server.url), make_app(server.url)
    async with one.run_test(size=SIZE) as pilot_one, two.run_test(size=SIZE) as pilot_two:
        await connected(pilot_one)
        await connected(pilot_two)
        await until(pilot_one, lambda: one.clients == 2)
        await pilot_one.press("s")
        await until(pilot_two, lambda: state_of(two) is State.SUCCESS)
        await until(pilot_one, lambda: state_of(one) is State.SUCCESS)

        def states(app: ProgressApp) -> list[tuple[str, str]]:
            return re.findall(r"(STARTING|IN_PROGRESS|ALMOST_DONE|SUCCESS) (\w+)", log_text(app))

        assert states(one) == states(two)
        assert [state for state, _ in states(one)] == [
            "STARTING",
            "IN_PROGRESS",
            "ALMOST_DONE",
            "SUCCESS",
        ]


async def test_quit_closes_the_websocket_with_1000(server: ProgressServer) -> None:
    """q closes the connection cleanly before the app exits."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        assert server.hub is not None
        (connection,) = server.hub.clients
        await pilot.press("q")
    await asyncio.wait_for(connection.wait_closed(), TIMEOUT)
    assert connection.close_code == 1000


async def test_a_refused_token_is_said_clearly() -> None:
    """The server refuses the token: a notification and the status bar say so."""
    async with ProgressServer(port=0, token="t0ken") as server:
        app = make_app(server.url, token="wrong")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "refused the token" in bar_text(app))
            assert bar_text(app) == "✘ Disconnected - the server refused the token (HTTP 401)"
            await until(pilot, lambda: any("refused the token" in t for t in toasts(app)))
            assert app.check_action("start", ()) is None
        app = make_app(server.url, token="t0ken")
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)


# Against a hostile server.


def details_text(app: ProgressApp) -> str:
    """What the calculation view shows, as plain text (markup would be gone from it)."""
    return str(app.query_one("#details", Label).render())


def details_spans(app: ProgressApp) -> list[object]:
    """The styled parts of the calculation view: markup, or an action link, would be one."""
    content = app.query_one("#details", Label).render()
    assert isinstance(content, Content)
    return list(content.spans)


@pytest.mark.parametrize("calculation_id", ["[/]", "[@click=app.quit]X[/]"])
async def test_markup_from_the_server_is_shown_literally(calculation_id: str) -> None:
    """An id that is Textual markup is shown as it is, never parsed: no MarkupError, no
    live action link; the app keeps running."""
    async with HostileServer(CASES[f"calculation_id {calculation_id}"].script) as server:
        app = make_app(server.url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: state_of(app) is State.SUCCESS)
            await pilot.pause()
            assert f"Calculation {calculation_id} · elapsed" in details_text(app)
            assert details_spans(app) == []
            assert f"SUCCESS {calculation_id}" in log_text(app)
            assert app.is_running and app.return_code is None


async def test_a_hostile_stream_means_reconnecting_with_backoff() -> None:
    """Each case of invalid messages in turn, one per connection: each connection is given
    up and retried, the attempts counting up (hello does not reset the backoff); the app
    never crashes nor stops retrying, and shows none of the invalid texts."""
    cases = [case for case in CASES.values() if case.invalid]
    async with HostileServer(*(case.script for case in cases)) as server:
        app = make_app(server.url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: reconnect_attempt(app) > len(cases))
            assert "- the server sent invalid messages (" in bar_text(app)
            assert app.query_one(ConnectionStatusBar).has_class("-reconnecting")
            log = log_text(app)
            lost = log.count("Connection lost: the server sent invalid messages (")
            assert lost >= len(cases)
            assert app.is_running and app.return_code is None
            for case in cases:
                for text in case.hidden:
                    assert text not in log + details_text(app)
            assert app.run_view is not None  # from the one case with a valid state
            assert app.run_view.snapshot.calculation_id == "before"
        assert server.connections >= len(cases)


async def test_a_lower_seq_is_not_shown() -> None:
    """An older state, or another with the same seq, never reaches the screen."""
    async with HostileServer(CASES["a lower seq"].script) as server:
        app = make_app(server.url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: state_of(app) is State.CANCELED)
            log = log_text(app)
            assert "IDLE first" in log and "CANCELED last" in log
            assert "older" not in log and "same" not in log
            assert "SUCCESS" not in log and "STARTING" not in log


async def test_unknown_message_types_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """Messages of types from a newer server change nothing, cost no connection and fill
    no log."""
    async with HostileServer(CASES["unknown message types"].script) as server:
        app = make_app(server.url)
        with caplog.at_level(logging.WARNING):
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: state_of(app) is State.CANCELED)
                assert app.connected
                assert "Connection lost" not in log_text(app)
        assert server.connections == 1
    assert caplog.records == []


async def test_an_error_while_showing_a_state_costs_the_connection_not_the_app(
    server: ProgressServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the UI on some data: logged with its traceback, the connection given up
    and retried; the app goes on."""
    follow = RunView.follow
    failures = iter([ZeroDivisionError("division by zero")])

    def failing_once(previous: RunView | None, snapshot: StateSnapshot) -> RunView:
        for failure in failures:
            raise failure
        return follow(previous, snapshot)

    monkeypatch.setattr(RunView, "follow", failing_once)
    app = make_app(server.url)
    with caplog.at_level(logging.ERROR):
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "an unexpected error while showing" in log_text(app))
            await connected(pilot)
            assert app.is_running
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


async def test_wss_against_a_plain_port_is_said_in_the_status_bar(
    server: ProgressServer,
) -> None:
    """A wss:// URL on a ws:// port: the sentence in the status bar, retried."""
    app = make_app(server.url.replace("ws://", "wss://"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: NOT_TLS in bar_text(app))
        assert "Reconnecting in" in bar_text(app)
