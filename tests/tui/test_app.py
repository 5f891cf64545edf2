"""progress-tui driven with Pilot against real servers on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import signal
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from rich.text import Text
from textual.content import Content
from textual.events import Key
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Button, Label, ProgressBar
from textual.widgets._progress_bar import Bar

from progress_client.client import ProgressClient
from progress_client.events import (
    ClientEvent,
    Connected,
    Connecting,
    ConnectionLost,
    HistoryReceived,
    StateReceived,
    Waiting,
)
from progress_client.failures import NOT_TLS
from progress_client.reconnect import ReconnectPolicy
from progress_protocol.states import State, StateSnapshot
from progress_server.server import ProgressServer
from progress_tui.app import TAKE_PERIOD, ProgressApp
from progress_tui.mailbox import KEPT_LIMIT, LISTED_EACH
from progress_tui.panel import PanelView
from progress_tui.screens.help_screen import HelpScreen
from progress_tui.widgets.calculation_view import CalculationView
from progress_tui.widgets.connection_bar import ConnectionStatusBar
from progress_tui.widgets.event_log import EventLog
from progress_tui.widgets.history_table import HistoryTable
from progress_tui.widgets.key_bar import KeyBar
from progress_tui.widgets.spinner import Spinner
from progress_tui.widgets.state_banner import SYMBOLS, StateBanner
from progress_tui.widgets.step_list import StepList
from tests.client.hostile import (
    CASES,
    FLOOD_LAST,
    ErrorFloodServer,
    FloodServer,
    HostileServer,
    Refusal,
    Script,
    state,
)
from tests.client.servers import instances
from tests.helpers import (
    TIME_FACTOR,
    TIMEOUT,
    ServerProcess,
    SteppedServer,
    free_port,
    http_request,
    join,
    states_until,
)
from tests.tui.scripted import (
    URL,
    ScriptedClient,
    connected_client,
    eventually,
    rendered,
    until,
)

#: The apps' backoff: the first wait before reconnecting at most, and the longest.
BACKOFF_INITIAL = 0.05
CAP = 0.5 * TIME_FACTOR
SIZE = (100, 30)


@pytest.fixture
def server(stepped: SteppedServer) -> SteppedServer:
    """A real server whose calculation moves on only at ``await server.step()``: each
    state lasts as long as the test needs to act or look within it."""
    return stepped


def make_app(
    url: str,
    *,
    token: str | None = None,
    name: str | None = "alice@laptop",
    ping_timeout: float = 5.0,
    **kwargs: object,
) -> ProgressApp:
    """The app on a real client of ``url``, with a short backoff; ``kwargs`` are the app's."""
    client = ProgressClient(
        url,
        policy=ReconnectPolicy(initial=BACKOFF_INITIAL, cap=CAP),
        token=token,
        name=name,
        ping_timeout=ping_timeout,
    )
    app = ProgressApp(client, **kwargs)  # type: ignore[arg-type]
    # A notification stays on screen for the whole test: Textual's 5 s pass unseen on a
    # busy machine between a key and the check of what it said.
    app.NOTIFICATION_TIMEOUT = 10 * TIMEOUT  # type: ignore[misc]
    return app


def state_of(app: ProgressApp) -> State | None:
    return app.snapshot.state if app.snapshot else None


def log_text(app: ProgressApp) -> str:
    """The event log's entries as one line of text."""
    return " ".join(" ".join(entry.plain.split()) for entry in app.query_one(EventLog).entries)


def toasts(app: ProgressApp) -> list[str]:
    """The notifications on screen now (Textual keeps toasts outside the DOM queries)."""
    return [f"{n.title}: {n.message}" for n in app._notifications]


def notified(app: ProgressApp) -> list[str]:
    """Every notification the app makes from now on, as ``title: message``, kept after
    it leaves the screen: on a busy machine one may time out before the test looks."""
    made: list[str] = []
    notify = app.notify

    def recording(message: str, *, title: str = "", **kwargs: Any) -> None:
        made.append(f"{title}: {message}")
        notify(message, title=title, **kwargs)

    app.notify = recording  # type: ignore[method-assign]
    return made


def bar_text(app: ProgressApp) -> str:
    return app.query_one(ConnectionStatusBar).describe()


COUNTDOWN = re.compile(r"Reconnecting in \d+\.\ds \(attempt (\d+)\)")


def reconnect_attempt(app: ProgressApp) -> int:
    """The attempt the bar counts down to; 0 while it says something else (Connecting)."""
    match = COUNTDOWN.search(bar_text(app))
    return int(match.group(1)) if match else 0


async def connected(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, ProgressApp)
    await until(pilot, lambda: app.connected and app.snapshot is not None, what="connected")


async def showing(pilot: Pilot[None], state: State) -> None:
    """Until the app has ``state`` and its banner, as drawn, names it (for a state that
    lasts until the test moves on: a :class:`SteppedServer`'s, or a final one)."""
    app = pilot.app
    assert isinstance(app, ProgressApp)
    caption = f"{SYMBOLS[state]} {state.value}"
    await until(
        pilot,
        lambda: state_of(app) is state and rendered(app, "#caption").strip() == caption,
        what=lambda: (
            f"the screen showing {caption} (it shows {rendered(app, '#caption').strip()!r}; "
            f"the log: {log_text(app)[-300:]!r})"
        ),
    )


def history_rows(app: ProgressApp) -> list[str]:
    """The history panel's rows, newest first, as text."""
    table = app.query_one(HistoryTable)
    return [
        " ".join(cell.plain for cell in table.get_row_at(index)) for index in range(table.row_count)
    ]


async def test_s_runs_through_every_state_to_success(server: SteppedServer) -> None:
    """s starts a calculation; the screen shows each state in turn and ends on SUCCESS,
    which comes first in the history (three steps: 3 min by the server's clock)."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        assert history_rows(app) == []
        await pilot.press("s")
        await showing(pilot, State.STARTING)
        for state in (State.IN_PROGRESS, State.ALMOST_DONE, State.SUCCESS):
            await server.step()
            await showing(pilot, state)
        await until(pilot, lambda: len(history_rows(app)) == 1, what="a run in the history")
        assert re.fullmatch(r"\d\d:\d\d:\d\d 3 min ✔ SUCCESS you ", history_rows(app)[0])
        states = re.findall(r"\b(IDLE|STARTING|IN_PROGRESS|ALMOST_DONE|SUCCESS)\b", log_text(app))
        assert states == ["IDLE", "STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"]
        assert "STARTING" in log_text(app) and "by alice@laptop (you)" in log_text(app)
        assert app.query_one(StateBanner).caption() == "✔ SUCCESS"
        assert app.query_one(StateBanner).has_class("-success")


async def test_c_during_in_progress_ends_on_canceled(server: SteppedServer) -> None:
    """c while IN_PROGRESS cancels: the screen ends on CANCELED, marked as such, and the
    history shows it first, live."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("s")
        await showing(pilot, State.STARTING)
        await server.step()
        await showing(pilot, State.IN_PROGRESS)
        await pilot.press("c")
        await showing(pilot, State.CANCELED)
        assert app.snapshot is not None and app.snapshot.canceled_during is State.IN_PROGRESS
        assert app.query_one(StateBanner).caption() == "✘ CANCELED"
        assert app.query_one(StateBanner).has_class("-canceled")
        panel = rendered(app, "#calculation")
        # (In a row, or down a timeline in a tall pane.)
        for step in ("✔ Starting", "✘ In progress", "· Almost done", "✘ Canceled"):
            assert step in panel
        assert "canceled by alice@laptop (you) during IN_PROGRESS" in " ".join(panel.split())
        await until(pilot, lambda: len(history_rows(app)) == 1)
        assert history_rows(app)[0].endswith(" ✘ CANCELED (IN_PROGRESS) you you")


async def test_keys_typed_quickly_are_sent_or_refused_aloud(server: SteppedServer) -> None:
    """s s s c c typed at once: start and cancel are both sent (the cancel is not lost),
    the calculation ends CANCELED, and each key not sent says why in a notification.
    (The calculation never moves on by itself here: the cancel always finds it running.)"""
    app = make_app(server.url)
    sent: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        send = app.client.send

        async def counting_send(action):  # type: ignore[no-untyped-def]
            sent.append(action)
            return await send(action)

        app.client.send = counting_send  # type: ignore[method-assign]
        await pilot.press("s", "s", "s", "c", "c")
        await until(pilot, lambda: state_of(app) is State.CANCELED and not app.in_flight)
        assert sent == ["start", "cancel"]
        shown = toasts(app)
        assert any(text.startswith("Already running: ") for text in shown)
        assert any(text.startswith("Not running: ") for text in shown)
        # A repeated refusal is one notification while it is on screen.
        assert len(shown) == 2


async def test_controls_follow_the_state(server: SteppedServer) -> None:
    """Start only when idle or done; Cancel only while running; Footer dims the others."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        start, cancel = app.query_one("#start", Button), app.query_one("#cancel", Button)
        assert (start.disabled, cancel.disabled) == (False, True)
        assert (app.check_action("start", ()), app.check_action("cancel", ())) == (True, None)
        await pilot.pause()  # laid out: the click lands where the button is drawn
        assert await pilot.click("#start"), "the click missed Start"
        await until(pilot, lambda: app.running and not app.in_flight, what="running, answered")
        assert (start.disabled, cancel.disabled) == (True, False)
        assert (app.check_action("start", ()), app.check_action("cancel", ())) == (None, True)
        await pilot.pause()
        assert await pilot.click("#cancel"), "the click missed Cancel"
        await showing(pilot, State.CANCELED)
        assert (start.disabled, cancel.disabled) == (False, True)


async def test_no_answer_is_said_after_the_timeout() -> None:
    """A server that stops answering: the start waits, the spinner turning; after the
    timeout, a notification says so, and nothing waits any more."""
    async with ServerProcess() as server:
        app = make_app(server.url, pending_timeout=0.3 * TIME_FACTOR)
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            spinner = app.query_one(Spinner)
            # Each change of what waits, and the spinner then (the timeout may come
            # before the test looks, on a busy machine).
            seen: list[tuple[list[str], bool]] = []

            def changed(in_flight: tuple[tuple[str, str], ...]) -> None:
                seen.append(([action for _, action in in_flight], spinner.active))

            app.watch(app, "in_flight", changed, init=False)
            server.signal(signal.SIGSTOP)
            try:
                await pilot.press("s")
                await until(
                    pilot,
                    lambda: any("No answer from the server to start" in t for t in toasts(app)),
                    what="the notification",
                )
                assert seen == [(["start"], True), ([], False)]
            finally:
                server.signal(signal.SIGCONT)


async def test_a_lost_connection_freezes_the_screen_at_that_moment(
    server: SteppedServer,
) -> None:
    """Server gone mid-run (while STARTING lasts): Start and Cancel dimmed, the state
    marked stale, the spinner stopped and the clock frozen at the moment of the loss."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("s")
        await showing(pilot, State.STARTING)
        before = time.time()
        await server.close()
        await until(pilot, lambda: not app.connected, what="the loss")
        assert app.frozen_at is not None and before <= app.frozen_at <= time.time()
        assert app.check_action("start", ()) is None and app.check_action("cancel", ()) is None
        banner = app.query_one(StateBanner)
        assert banner.has_class("-stale") and banner.caption() == "▶ STARTING (stale)"
        view = app.query_one(CalculationView)
        assert view.now() == app.frozen_at
        timing = str(app.query_one("#timing", Label).render())
        await pilot.pause(0.3)
        view.tick()  # drawn again now, 0.3 s later: "0.5 s elapsed" would move on
        assert str(app.query_one("#timing", Label).render()) == timing
        assert not app.query_one(Spinner).active


async def test_server_errors_are_titled_for_people(server: SteppedServer) -> None:
    """The server's refusal is a notification titled "Not running", its sentence below,
    and a line in the log."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await app.client.send("cancel")  # past the app's own check: the server refuses
        await until(pilot, lambda: any("no running calculation" in t for t in toasts(app)))
        assert toasts(app)[0].startswith("Not running: There is no running calculation")
        assert "Refused: There is no running calculation" in log_text(app)


async def test_reconnects_with_a_countdown_and_says_the_calculation_was_lost() -> None:
    """Server stopped mid-run: countdown and attempt in the bar. A new server: connected,
    resynced, and the calculation that was running is said lost, in the log and in a
    notification."""
    # Not port 0: once free, the kernel may give that port to another test's server.
    first = SteppedServer(port=free_port())
    async with first:
        app = make_app(first.url)
        notifications = notified(app)
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            await pilot.press("s")
            await showing(pilot, State.STARTING)  # until the server closes
            assert app.snapshot is not None and app.snapshot.calculation_id is not None
            lost = f"Calculation {app.snapshot.calculation_id} was lost: the server restarted"
            await first.close()
            await until(pilot, lambda: reconnect_attempt(app) >= 2, what="a countdown to try 2")
            assert "going away (1001)" in log_text(app)
            assert app.query_one(ConnectionStatusBar).has_class("-reconnecting")

            async with SteppedServer(port=first.port):
                # Within the longest wait (CAP) of the backoff, and a moment to connect.
                await until(
                    pilot, lambda: app.connected, timeout=CAP + TIMEOUT / 5, what="reconnected"
                )
                await showing(pilot, State.IDLE)
                await until(pilot, lambda: lost in log_text(app), what="the run said lost")
                assert any(lost in text for text in notifications), notifications
                assert not app.query_one(StateBanner).has_class("-stale")
                assert bar_text(app).startswith(f"● Connected to {first.url} - ")
                assert "- 1 watching" in bar_text(app)
                await pilot.press("q")


async def test_r_on_a_healthy_connection_resynchronises_without_reconnecting(
    server: SteppedServer,
) -> None:
    """r while connected keeps the connection (no other client sees a count change) and
    asks again for the state and the history; held down, it still never reconnects."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        assert server.hub is not None
        (connection,) = server.hub.clients
        sent: list[str] = []
        send = app.client.send

        async def counting_send(action):  # type: ignore[no-untyped-def]
            sent.append(action)
            return await send(action)

        app.client.send = counting_send  # type: ignore[method-assign]
        await pilot.press("r", "r", "r")
        await until(pilot, lambda: len(sent) == 6)
        await pilot.pause(0.1)
        assert sent == ["status", "history"] * 3
        assert app.connected and server.hub.clients == {connection}
        assert "Resync requested" in log_text(app) and "Connection lost" not in log_text(app)


async def test_after_giving_up_the_screen_says_why_and_r_tries_again() -> None:
    """A refusal for good (404): the bar, the banner and the panel say it stopped, why
    (in a few words; the server's sentence in the log) and that r tries again; r starts
    the connection again."""
    sentence = "No WebSocket endpoint at /nope; connect to /progress"
    script = Script(frames=(state("IDLE", 1),))
    async with HostileServer(script, refusals=[Refusal.error(404, sentence)]) as server:
        app = make_app(server.url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.connection.stopped)
            why = "nothing at /progress (HTTP 404)"
            assert bar_text(app) == f"✘ Stopped: {why} - press r to try again"
            assert sentence in log_text(app)
            assert app.query_one(StateBanner).caption() == "✘ Not connected"
            details = app.query_one(CalculationView).details()
            assert details == f"Stopped: {why}. Press r to try again."
            assert "waiting for the server" not in rendered(app, "#calculation").lower()
            assert "No calculation yet" not in rendered(app, "#calculation")
            assert any(text.startswith("Stopped connecting: ") for text in toasts(app))
            await pilot.press("s")  # not sent: says why
            assert any("Press r to try again" in text for text in toasts(app))
            await pilot.press("r")
            await connected(pilot)
            assert app.query_one(StateBanner).caption().startswith("○ IDLE")
        assert server.handshakes == 2


async def test_a_failing_connection_loop_is_caught_at_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client's loop raising: logged with its traceback, shown as stopped with the
    error and r; the app keeps running, and r runs the loop again."""

    class BrokenClient(ProgressClient):
        calls = 0

        async def events(self) -> AsyncGenerator[ClientEvent, None]:
            self.calls += 1
            raise ZeroDivisionError("division by zero")
            yield  # an async generator

    app = ProgressApp(BrokenClient("ws://127.0.0.1:1/progress"), log_path="/var/log/tui.log")
    with caplog.at_level(logging.ERROR):
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.connection.stopped)
            assert "ZeroDivisionError: division by zero" in bar_text(app)
            assert "/var/log/tui.log" in app.query_one(CalculationView).details()
            await pilot.press("r")
            await until(pilot, lambda: app.client.calls == 2)  # type: ignore[attr-defined]
            assert app.is_running and app.return_code is None
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


async def test_a_refused_token_stops_with_the_reason() -> None:
    """A server with a token refuses ours: stopped, the reason in the bar and a
    notification; Start dimmed."""
    async with ProgressServer(port=0, token="t0ken") as guarded:
        app = make_app(guarded.url, token="wrong")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.connection.stopped)
            assert "token not accepted (HTTP 401)" in bar_text(app)
            assert any("token not accepted (HTTP 401)" in t for t in toasts(app))
            assert "the server refused the token (HTTP 401)" in log_text(app)
            assert app.check_action("start", ()) is None


async def test_two_apps_see_the_same_sequence(server: SteppedServer) -> None:
    """Two terminals on one server: both show the same states, in the same order (the
    three steps come at once: the log lists each change, however close together)."""
    one, two = make_app(server.url), make_app(server.url, name="bob@desk")
    async with one.run_test(size=SIZE) as pilot_one, two.run_test(size=SIZE) as pilot_two:
        await connected(pilot_one)
        await connected(pilot_two)
        await until(pilot_one, lambda: one.clients == 2, what="2 clients")
        await pilot_one.press("s")
        await showing(pilot_two, State.STARTING)
        await server.step(3)
        await showing(pilot_two, State.SUCCESS)
        await showing(pilot_one, State.SUCCESS)

        def states(app: ProgressApp) -> list[tuple[str, str]]:
            return re.findall(r"(STARTING|IN_PROGRESS|ALMOST_DONE|SUCCESS) (\w+)", log_text(app))

        assert states(one) == states(two)
        assert [state for state, _ in states(one)] == [
            "STARTING",
            "IN_PROGRESS",
            "ALMOST_DONE",
            "SUCCESS",
        ]
        assert "STARTING" in log_text(two) and "by alice@laptop " in log_text(two) + " "


def panel_parts(app: ProgressApp) -> list[str]:
    """What each widget of the calculation panel renders now, as text, in order (the
    bar as its percentage): what is painted next, without waiting for the paint."""
    parts = []
    for widget in app.query_one("#calculation").query("*"):
        if not widget.display or widget.children:
            continue
        if isinstance(widget, Bar):
            # The progress, not the bar's own percentage: before Textual 8 the bar keeps
            # it rounded to the width it had when it was set.
            assert isinstance(widget.parent, ProgressBar)
            parts.append(f"bar {widget.parent.percentage}")
        elif isinstance(widget, StepList):
            parts.extend(line.plain for line in widget.lines(1000))
        else:
            shown = widget.render()
            parts.append(shown.plain if isinstance(shown, Content | Text) else str(shown))
    return parts


def panel(app: ProgressApp) -> str:
    """The calculation panel as drawn (after its last tick, and the layout that follows)."""
    return rendered(app, "#calculation", within="#body")


async def test_a_late_joiner_draws_the_same_panel(server: SteppedServer) -> None:
    """A TUI that watched and one that joined later draw the same calculation panel, in
    every state, after SUCCESS and after a cancel in each step (same clock for both, the
    server's; the actions come from a third client, so that no panel says "you").

    Each state lasts until the test moves on: the watcher shows it, a new TUI joins, and
    both panels are compared, as the widgets render them and as painted."""
    running = [State.STARTING, State.IN_PROGRESS, State.ALMOST_DONE]
    clock = server.clock.now

    async def act(action: str) -> None:
        status, _, _ = await http_request(
            server.port, "POST", f"/{action}", headers={"X-Progress-Name": "carol@ci"}
        )
        assert status < 300

    compared: list[tuple[State, State | None]] = []
    watcher = make_app(server.url, clock=clock, animate=False)

    async def join_now_and_compare() -> None:
        joiner = make_app(server.url, clock=clock, animate=False, name="dave@box")
        async with joiner.run_test(size=(60, 20)) as joining:
            await until(
                joining,
                lambda: (joiner.snapshot, joiner.history) == (watcher.snapshot, watcher.history),
                what="the joiner in the watcher's state",
            )

            def same_parts() -> None:
                for app in (watcher, joiner):
                    app.query_one(CalculationView).tick()
                assert panel_parts(joiner) == panel_parts(watcher)

            # Once both have drawn the clock's time: a widget of Textual's (the bar) may
            # take it a message later, on older Textual versions in particular.
            await eventually(joining, same_parts)
            # As painted, once each screen has laid out what it renders (a frame or so).
            with contextlib.suppress(AssertionError):
                await until(joining, lambda: panel(joiner) == panel(watcher))
            assert panel(joiner) == panel(watcher)  # the difference, if they never agree
            assert watcher.snapshot is not None
            compared.append((watcher.snapshot.state, watcher.snapshot.canceled_during))

    async with watcher.run_test(size=(60, 20)) as watching:
        await connected(watching)
        await act("start")
        for steps, moment in enumerate([*running, State.SUCCESS]):
            await server.step(min(steps, 1))
            await showing(watching, moment)
            await join_now_and_compare()
        for steps, during in enumerate(running):
            await act("start")
            await server.step(steps)
            await showing(watching, during)
            await act("cancel")
            await showing(watching, State.CANCELED)
            await join_now_and_compare()
        text = " ".join(panel(watcher).split())
        assert "started by carol@ci · canceled by carol@ci during ALMOST_DONE" in text
    assert compared == [
        *((moment, None) for moment in running),
        (State.SUCCESS, None),
        *((State.CANCELED, during) for during in running),
    ]


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_q_and_ctrl_c_close_the_websocket_with_1000(server: SteppedServer, key: str) -> None:
    """q, and ctrl+c likewise, close the connection cleanly and quit."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        assert server.hub is not None
        (connection,) = server.hub.clients
        await pilot.press(key)
        await until(pilot, lambda: not app.is_running)
    await asyncio.wait_for(connection.wait_closed(), TIMEOUT)
    assert connection.close_code == 1000


@pytest.mark.parametrize("key", ["question_mark", "f1"])
async def test_help_shows_the_keys_the_server_and_the_name(key: str) -> None:
    """? or F1: the keys, the URL, the server's version, this client's name; Esc closes."""
    client = connected_client()
    app = ProgressApp(client, log_path="/tmp/tui.log")
    async with app.run_test(size=SIZE) as pilot:
        await client.played(pilot)
        await pilot.press(key)
        assert isinstance(app.screen, HelpScreen)

        def everything_said() -> None:
            text = rendered(app, app.screen.query_one("VerticalScroll"))
            for words in (
                "s  ",
                "Start a calculation",
                "Cancel the running calculation",
                "Show or hide the history",
                URL,
                "progress-server/9.8.7",
                "alice@laptop",
                "/tmp/tui.log",
            ):
                assert words in text

        await eventually(pilot, everything_said)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        # No static icon in the header that would look like a stuck spinner.
        assert "◔" not in rendered(app, app.screen)


async def test_the_command_palette_offers_the_apps_commands(server: SteppedServer) -> None:
    """The palette lists the app's commands first, r's named for what it does now
    (Resync, while connected); its Start starts a calculation; Textual's Keys, which
    repeats Help, is left out."""
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        commands = list(app.get_system_commands(app.screen))
        titles = [command.title for command in commands]
        assert titles[:8] == [
            "Start",
            "Cancel",
            "Resync",
            "Toggle log",
            "Toggle history",
            "Notify",
            "Help",
            "Quit",
        ]
        assert titles.count("Quit") == 1 and "Keys" not in titles
        await commands[0].callback()  # type: ignore[misc]
        await showing(pilot, State.STARTING)


async def test_a_notification_never_hides_the_status_bar() -> None:
    """In a small pane, even a tall notification stands above the status bar and the keys:
    their lines on screen are theirs."""
    client = connected_client()
    app = ProgressApp(client)
    async with app.run_test(size=(40, 12), notifications=True) as pilot:
        await client.played(pilot)
        await pilot.press("c")  # refused: a notification
        app.notify("a long notification " * 5, title="Test")
        await pilot.pause()
        assert app._notifications
        bar, keys = app.query_one(ConnectionStatusBar), app.query_one(KeyBar)

        def above_the_bar() -> None:
            screen = rendered(app, app.screen).splitlines()
            assert screen[bar.region.y].strip() == bar.describe(bar.size.width)
            assert screen[keys.region.y].startswith(" s Start c Cancel")
            assert "notification" in "".join(screen[: bar.region.y])

        await eventually(pilot, above_the_bar)


async def test_resizing_back_and_forth_restores_everything() -> None:
    """Wide, narrow, wide again: every log line whole, no horizontal scrollbar, the log
    scrolled to its end; the panels come back."""
    client = connected_client()
    app = ProgressApp(client)
    async with app.run_test(size=(120, 36)) as pilot:
        await client.played(pilot)
        log = app.query_one(EventLog)
        for index in range(60):
            log.add(f"entry {index} " + "word " * 12)
        for size in ((60, 40), (40, 12), (120, 36)):
            await pilot.resize_terminal(*size)
            await pilot.pause()

        def restored() -> None:
            assert log.scroll_y == log.max_scroll_y
            assert log.display and app.query_one(HistoryTable).display
            assert log.max_scroll_x == 0 and not log.show_horizontal_scrollbar
            assert log.virtual_size.width <= log.scrollable_content_region.width
            tail = " ".join(rendered(app, log).replace("│", " ").split())
            assert "entry 59 " + "word " * 11 + "word" in tail

        await eventually(pilot, restored)


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
            assert f"Calculation {calculation_id}" == details_text(app)
            assert details_spans(app) == []
            assert f"SUCCESS {calculation_id}" in log_text(app)
            assert app.is_running and app.return_code is None


async def test_a_hostile_stream_means_reconnecting_with_backoff() -> None:
    """Each case of invalid messages in turn, one per connection: each connection is given
    up and retried, the attempts counting up (hello does not reset the backoff); the app
    never crashes nor stops retrying, and shows none of the invalid texts."""
    cases = [case for case in CASES.values() if case.invalid]
    # make_app's backoff: the longest its waits can add up to.
    backoff = sum(min(CAP, BACKOFF_INITIAL * 2**attempt) for attempt in range(len(cases) + 1))
    async with HostileServer(*(case.script for case in cases)) as server:
        app = make_app(server.url)
        async with app.run_test(size=SIZE) as pilot:
            await until(
                pilot,
                lambda: reconnect_attempt(app) > len(cases),
                2 * TIMEOUT + backoff,  # a deadline, not a measure: a connection each
                what=lambda: f"a countdown to attempt {len(cases) + 1} ({bar_text(app)!r})",
            )
            assert app.query_one(ConnectionStatusBar).has_class("-reconnecting")
            log = log_text(app)
            lost = log.count("Connection lost: the server sent invalid messages (")
            assert lost >= len(cases)
            assert app.is_running and app.return_code is None
            for case in cases:
                for text in case.hidden:
                    assert text not in log + details_text(app)
            assert app.snapshot is not None  # from the one case with a valid state
            assert app.snapshot.calculation_id == "before"
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
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_an_error_while_showing_a_state_costs_the_connection_not_the_app(
    server: SteppedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the UI on some data: logged with its traceback, the connection given up
    and retried; the app goes on."""
    of = PanelView.of
    failures = iter([ZeroDivisionError("division by zero")])

    def failing_once(snapshot: StateSnapshot, history: object = ()) -> PanelView:
        for failure in failures:
            raise failure
        return of(snapshot, history)  # type: ignore[arg-type]

    monkeypatch.setattr(PanelView, "of", failing_once)
    app = make_app(server.url)
    with caplog.at_level(logging.ERROR):
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "an unexpected error while showing" in log_text(app))
            await connected(pilot)
            assert app.is_running
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


async def test_wss_against_a_plain_port_is_said_in_the_status_bar(
    server: SteppedServer,
) -> None:
    """A wss:// URL on a ws:// port: the sentence in the status bar, retried."""
    app = make_app(server.url.replace("ws://", "wss://"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: NOT_TLS in bar_text(app))
        assert "Reconnecting in" in bar_text(app)


# Several URLs: failover.


#: The step of the failover test: the TUI has one to come back on the second instance
#: and still see STARTING, two to see every state.
FAILOVER_STEP = 0.5 * TIME_FACTOR


async def test_a_sigkilled_instance_hands_its_tui_to_the_next(
    redis_url: str, redis_prefix: str
) -> None:
    """Two instances sharing the calculation, the TUI given both URLs and on the first;
    SIGKILL the first the moment it announces STARTING: the TUI moves to the second at
    once (its backoff is far longer than the test) and follows the same run to SUCCESS,
    showing the second URL, every state once and no "lost" calculation."""
    loop = asyncio.get_running_loop()
    async with instances(2, redis_url, redis_prefix, step=FAILOVER_STEP) as servers:
        first, second = servers
        never = ReconnectPolicy(initial=10 * TIMEOUT, cap=10 * TIMEOUT, random=lambda: 1.0)
        client = ProgressClient([first.url, second.url], policy=never, name="alice@laptop")
        app = ProgressApp(client)
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            assert app.connection.url == first.url and app.sub_title == first.url
            # Another client of the first instance: the STARTING it gets is the moment.
            observer, _, _ = await join(first.url)
            async with observer:
                await pilot.press("s")
                *_, starting = await states_until(observer, "STARTING")
                first.signal(signal.SIGKILL)
                killed = loop.time()
            calculation_id = starting["calculation_id"]
            await until(
                pilot,
                lambda: app.connected and app.connection.url == second.url,
                what=f"connected to {second.url}",
            )
            failover = loop.time() - killed
            await showing(pilot, State.SUCCESS)
            assert app.snapshot is not None and app.snapshot.calculation_id == calculation_id
            assert not app.stale
            assert bar_text(app).startswith(f"● Connected to {second.url} - ")
            assert app.sub_title == second.url
            log = log_text(app)
            assert f"Connection to {first.url} lost: the connection was lost" in log
            assert f"Failing over to {second.url} (attempt 1): {first.url}: " in log
            assert f"Connected to {second.url} (progress-server/" in log
            states = re.findall(rf"\b([A-Z_]+) {calculation_id}\b", log)
            assert states == ["STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"], (
                f"the failover took {failover:.2f} s, steps of {FAILOVER_STEP:g} s"
            )
            assert not any("was lost" in text for text in toasts(app))
            await pilot.press("question_mark")

            def both_urls_said() -> None:
                about = " ".join(rendered(app, app.screen.query_one("VerticalScroll")).split())
                assert f"URL {second.url}" in about and f"Fails over to {first.url}" in about

            await eventually(pilot, both_urls_said)


async def test_a_url_refused_for_good_is_said_and_left_out() -> None:
    """Of two URLs, the first refused for good (a wrong path): a notification and the
    log say it is left out, and the app connects through the second."""
    async with (
        ProgressServer(port=0) as server,
        HostileServer(refusals=[Refusal.error(404, "Wrong path.")] * 9) as wrong,
    ):
        client = ProgressClient(
            [wrong.url, server.url], policy=ReconnectPolicy(initial=100, cap=100)
        )
        app = ProgressApp(client)
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            assert app.connection.url == server.url
            refusal = "the server refused the connection (HTTP 404): Wrong path."
            assert f"Left out {wrong.url}: {refusal}" in log_text(app)
            assert toasts(app) == [
                f"URL left out: {wrong.url}: nothing at /progress (HTTP 404). "
                "The other URLs are tried."
            ]
        assert wrong.handshakes == 1


async def test_failing_over_to_a_server_without_the_run_says_so() -> None:
    """Two URLs of servers that do not share the calculation: after the failover the
    running calculation is not there, and the notification says which URL lacks it,
    not that a server restarted; the bar names the URL that failed while waiting."""
    first, second = URL, "ws://127.0.0.1:3004/progress"
    running = StateSnapshot(State.IN_PROGRESS, "abcdef123456", 7, time.time(), 2.0)
    client = ScriptedClient(
        Connecting(first, 1),
        Connected(first, "progress-server/9.8.7", "c0ffee"),
        StateReceived(running),
        HistoryReceived(()),
        ConnectionLost(first, "the connection was lost", 1006),
        Waiting(second, 0.0, 0.0, 1, "the connection was lost"),
        url=[first, second],
    )
    app = ProgressApp(client, now=lambda: 0.0)
    async with app.run_test(size=SIZE) as pilot:
        await client.played(pilot)
        assert bar_text(app) == (
            f"↻ Reconnecting in 0.0s (attempt 1) - {first}: the connection was lost"
        )
        client.play(
            Connecting(second, 1),
            Connected(second, "progress-server/9.8.7", "f00d"),
            StateReceived(StateSnapshot(State.IDLE, None, 0, time.time(), 2.0)),
            HistoryReceived(()),
        )
        await client.played(pilot)
        assert toasts(app) == [
            f"Calculation lost: Calculation abcdef123456 was lost: {second} does not have it"
        ]
        assert f"Failing over to {second} (attempt 1): {first}: the connection was lost" in (
            log_text(app)
        )


# A server faster than any screen.

#: States a flood has sent before the app is looked at: a second or so of it.
FLOODED = 3000
#: The messages waiting in the app's and its widgets' Textual queues at any moment,
#: under a flood: a few dozen at most with the mailbox (thousands without). They are
#: Textual's own (layouts, screen updates, the Footer's callbacks), more of them on a
#: slower machine.
MAX_QUEUED = 100 * TIME_FACTOR
#: How long the flood may take to reach FLOODED states, or KEY_REDRAWS (a deadline, not
#: a measure: the flood goes at the pace the app reads, slower on a busy machine).
FLOOD_DEADLINE = 2 * TIMEOUT
#: How long the app's keepalive waits for a pong under a flood: FloodServer sends up to
#: FLOOD_AHEAD states ahead of what the app read, and the pong comes behind them (at a few
#: hundred states a second on a busy machine, more than the client's 5 s). A real
#: server keeps a slow client a state or so behind (its hub conflates), not thousands.
FLOOD_PATIENCE = FLOOD_DEADLINE
#: The states the app shows in any second, at most, however many come: a take from the
#: mailbox each TAKE_PERIOD with one state in the place of those it had no time for
#: (and one more after each summary), and the LISTED_EACH states the log lists. A bound
#: by design, on any machine; without the mailbox, each of thousands is shown.
SHOWN_EACH = round(1 / TAKE_PERIOD) + 1 + LISTED_EACH
#: Redraws of the Footer's keys to await under a flood (Start and Cancel flip with
#: every run): 2 s of them (8 keys each).
KEY_REDRAWS = 8
#: Widgets alive but not shown any more after them: the keys of the Footer's last
#: redraw or two, on their way out (measured: 9 to 16; 57 to 99 when the Footer kept
#: every key it drew, or was redrawn at every frame).
MAX_UNSHOWN = 40

#: A change listed, "(since ...)" the time the flooding server gives them all.
LISTED = re.compile(
    r"\d\d:\d\d:\d\d (?:STARTING|IN_PROGRESS|ALMOST_DONE|SUCCESS) \S+(?: \(since [^)]+\))?"
)
SUMMED = re.compile(r"\d\d:\d\d:\d\d (\d+) more changes? in 1 s, the last: .+")


def queued(app: ProgressApp) -> int:
    """The messages waiting in the Textual queues of the app and its screen's widgets."""
    pumps = [app, app.screen, *app.screen.walk_children()]
    return sum(pump.message_queue_size for pump in pumps)


def widgets_alive() -> int:
    """The Textual widgets in memory, shown or not, once the garbage is collected."""
    gc.collect()
    return sum(1 for thing in gc.get_objects() if isinstance(thing, Widget))


def press_now(app: ProgressApp, key: str) -> None:
    """A key, posted as the terminal's driver posts it. (Pilot's press() also waits for
    the process to be idle, which it never is under a flood.)"""
    app.post_message(Key(key, key))


async def test_keys_and_q_are_handled_at_once_under_a_flood() -> None:
    """A server sending valid states as fast as the app reads them (thousands a second):
    the screen shows a few dozen of them a second, what waits for it stays a few
    messages, memory holds no more widgets than a few the screen just let go, a key is
    handled and q quits, each within a generous bound (before the mailbox, q did not
    quit within 60 s)."""
    async with FloodServer() as flood:
        app = make_app(flood.url, ping_timeout=FLOOD_PATIENCE)
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            before = widgets_alive()
            redraws = 0

            def redrawn(screen: object) -> None:
                nonlocal redraws
                redraws += 1

            app.screen.bindings_updated_signal.subscribe(app, redrawn)
            shown = 0

            def new_state(snapshot: object) -> None:
                nonlocal shown
                shown += 1

            app.watch(app, "snapshot", new_state, init=False)
            loop = asyncio.get_running_loop()
            began = loop.time()
            waiting: list[int] = []

            def flooded() -> bool:
                waiting.append(queued(app))
                return flood.sent >= FLOODED

            await until(pilot, flooded, FLOOD_DEADLINE, what=f"{FLOODED} states sent")
            took = loop.time() - began
            assert shown <= SHOWN_EACH * (took + 1), (
                f"{shown} states shown in {took:.1f} s, of {flood.sent} sent"
            )
            assert max(waiting) <= MAX_QUEUED, f"messages waiting, as sampled: {waiting}"
            # Entries that nothing replaces are bounded; of states, one at a time.
            assert app.mailbox.peak <= KEPT_LIMIT + 3
            await until(
                pilot,
                lambda: redraws >= KEY_REDRAWS,
                FLOOD_DEADLINE,  # a deadline: a redraw needs a take that flips the keys
                what=lambda: f"{KEY_REDRAWS} redraws of the keys (so far {redraws})",
            )
            assert widgets_alive() - before <= MAX_UNSHOWN
            history = app.query_one(HistoryTable)
            assert not history.display
            press_now(app, "h")
            await until(pilot, lambda: history.display)
            press_now(app, "q")
            await until(pilot, lambda: not app.is_running)


async def test_after_a_flood_the_screen_shows_the_last_state_and_the_log_sums_up() -> None:
    """Thousands of states, then the server's last one: the screen shows that last one;
    the log lists the first few changes of each second and sums up the others ("2345
    more changes in 1 s, the last: ..."), every change counted once."""
    async with FloodServer() as flood:
        app = make_app(flood.url, ping_timeout=FLOOD_PATIENCE)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: flood.sent >= FLOODED, FLOOD_DEADLINE, what="the flood")
            last = await flood.stop()
            await until(pilot, lambda: FLOOD_LAST in rendered(app, "#details"))
            assert app.snapshot is not None and app.snapshot.seq == last
            assert state_of(app) is State.SUCCESS

            def counted() -> tuple[int, list[int]]:
                """Changes listed one by one, and the counts of the summaries."""
                lines = [entry.plain for entry in app.query_one(EventLog).entries]
                listed = sum(1 for line in lines if LISTED.fullmatch(line))
                summed = [int(match[1]) for line in lines if (match := SUMMED.fullmatch(line))]
                return listed, summed

            # The last second is summed up when it ends. Every state of the flood is a
            # change (seq 1 to last, one connection).
            await until(pilot, lambda: counted()[0] + sum(counted()[1]) == last)
            listed, summed = counted()
            assert summed, "no summary"
            assert listed <= LISTED_EACH * (len(summed) + 1)
            assert "Connection lost" not in log_text(app)


async def test_a_run_at_the_shortest_step_still_lists_each_state() -> None:
    """Four states within 3 ms (--step-seconds 0.001) are no flood: the log lists each
    one, as at any ordinary pace, and sums nothing up."""
    async with ProgressServer(port=0, step_seconds=0.001) as server:
        app = make_app(server.url)
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            await pilot.press("s")
            await until(pilot, lambda: state_of(app) is State.SUCCESS)
            states = re.findall(
                r"\b(IDLE|STARTING|IN_PROGRESS|ALMOST_DONE|SUCCESS)\b", log_text(app)
            )
            assert states == ["IDLE", "STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"]
            assert "more change" not in log_text(app)


async def test_a_flood_of_errors_nobody_asked_for_is_folded_and_q_is_quick() -> None:
    """A server sending error messages nobody asked for, as fast as TCP takes them, and
    reading nothing: the app keeps ten a second, folds the rest into one log line,
    shows one notification a second at most, keeps its mailbox bounded, and q quits at
    once (its close frame goes out; an answer that never comes is not waited for 2 s)."""
    async with ErrorFloodServer() as flood:
        app = make_app(flood.url, ping_timeout=FLOOD_PATIENCE)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await connected(pilot)
            loop = asyncio.get_running_loop()
            began = loop.time()
            notified = 0

            def folded() -> bool:
                nonlocal notified
                notified = max(notified, len(app._notifications))
                return "more replies from the server, asked by nobody here" in log_text(app)

            await until(pilot, folded, FLOOD_DEADLINE, what="a line for the folded replies")
            await until(pilot, lambda: flood.sent >= 20 * FLOODED, FLOOD_DEADLINE, what="the flood")
            took = loop.time() - began
            assert notified <= took + 2, f"{notified} notifications in {took:.1f} s"
            assert app.mailbox.peak <= KEPT_LIMIT + 3
            quitting = loop.time()
            press_now(app, "q")
            await until(pilot, lambda: not app.is_running, FLOOD_DEADLINE, what="quitting")
            quit_took = loop.time() - quitting
            assert quit_took < 1.0 * TIME_FACTOR, f"q took {quit_took:.2f} s"
