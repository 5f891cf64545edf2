"""progress-tui tiled into small panes: what a user of one reported, each a test.

The app is given a client that plays the events a real connection brings (the tests
against real servers are in test_app.py and test_e2e.py); what is asserted is what the
pane shows.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from progress_client.events import (
    ClientsChanged,
    Connected,
    Connecting,
    ConnectionLost,
    HistoryReceived,
    ServerError,
    StateReceived,
)
from progress_protocol.messages import Error, ErrorCode
from progress_protocol.states import Attribution, Run, State, StateSnapshot
from progress_tui import toasts
from progress_tui.app import ProgressApp
from progress_tui.widgets.calculation_view import CalculationView
from progress_tui.widgets.connection_bar import ConnectionStatusBar
from progress_tui.widgets.event_log import EventLog
from progress_tui.widgets.history_table import COLUMNS, HistoryTable
from progress_tui.widgets.key_bar import KeyBar
from progress_tui.widgets.state_banner import StateBanner
from tests.helpers import TIMEOUT
from tests.tui.scripted import URL, ScriptedClient, eventually, rendered, until

# Times on screen are local time: the same everywhere (tests/tui/conftest.py).
pytestmark = pytest.mark.usefixtures("utc")

NOW = time.time()
ALICE = Attribution("a11ce", "alice@laptop")
BOB = Attribution("b0b", "bob@desk-with-a-long-hostname")
ID = "3b6188a98e7a"
RUNS = tuple(
    Run(
        f"{index:012x}",
        NOW - 300 * index,
        NOW - 300 * index + 3.2,
        State.CANCELED if index % 2 else State.SUCCESS,
        State.IN_PROGRESS if index % 2 else None,
        ALICE,
        BOB if index % 2 else None,
    )
    for index in range(1, 6)
)


def running(*, client_id: str = "c0ffee", changed_at: float = NOW - 1.0) -> ScriptedClient:
    """Connected to a server two seconds into a run, with five runs in its history."""
    return ScriptedClient(
        Connecting(URL, 1),
        Connected(URL, "progress-server/9.8.7", client_id),
        StateReceived(
            StateSnapshot(State.IN_PROGRESS, ID, 3, changed_at, 2.0, started_at=NOW - 3.0)
        ),
        HistoryReceived(RUNS),
        ClientsChanged(3),
    )


def essentials(app: ProgressApp) -> list[str]:
    """The lines that must always be whole: the state's name, the progress bar and its
    percentage, the connection status."""
    screen = rendered(app, app.screen).splitlines()
    caption = app.query_one(StateBanner).query_one("#caption")
    bar = app.query_one(CalculationView).query_one("ProgressBar")
    status = app.query_one(ConnectionStatusBar)
    return [
        screen[widget.region.y][widget.region.x : widget.region.right]
        for widget in (caption, bar, status)
    ]


def assert_essentials_shown(app: ProgressApp, *, log_rows: int = 0) -> None:
    """The state's name, the progress and the status are whole on screen (and the log
    has ``log_rows`` rows at least)."""
    assert app.query_one(EventLog).region.height >= log_rows
    state, progress, status = essentials(app)
    assert "▶ IN_PROGRESS" in state
    assert progress.rstrip().endswith("%")
    assert "● Connected" in status


@pytest.mark.parametrize("size", [(40, 12), (60, 20)])
async def test_l_and_h_show_the_panels_a_small_pane_hides(size: tuple[int, int]) -> None:
    """No room for the log or the history until l or h, which the key bar names (and
    q, always); each then gets rows of its own, with the state, the progress and the
    status still in view. Where two would leave neither a useful row (12 rows), h shows
    the history in the log's place; at 20 rows both show. l again hides the log."""
    client = running()
    app = ProgressApp(client)
    async with app.run_test(size=size) as pilot:
        await client.played(pilot)
        log, history = app.query_one(EventLog), app.query_one(HistoryTable)
        assert not log.display and not history.display
        keys = rendered(app, app.query_one(KeyBar))
        # "h History", or "h Hist" in 40 columns.
        assert "l Log" in keys and "h Hist" in keys and keys.endswith("q Quit")
        await pilot.press("l")

        def log_shown() -> None:
            assert log.display and log.region.height >= 5
            assert "IN_PROGRESS" in rendered(app, log)  # the newest lines
            assert_essentials_shown(app)

        await eventually(pilot, log_shown)
        await pilot.press("h")
        await pilot.pause()
        assert history.display and history.region.height >= 4
        if size[1] < 20:
            assert not log.display
            await pilot.press("l")  # the log again, in the history's place
            await pilot.pause()
            assert log.display and not history.display
            await pilot.press("h")
        else:
            await eventually(pilot, lambda: assert_essentials_shown(app, log_rows=4))
            await pilot.press("l")

        def history_alone() -> None:
            assert not log.display and history.region.height >= 5
            shown = rendered(app, history)
            width = history.scrollable_content_region.width
            assert "✘ canceled in" in shown, f"{history.layout_shown} at {width}: {shown}"
            assert_essentials_shown(app)

        await eventually(pilot, history_alone)


async def test_runs_that_come_while_the_history_is_hidden_fit_its_width() -> None:
    """In a 40x12 pane the history, shown, then hidden behind the log, gets a new run;
    shown again at the width it had (so with no Resize), it keeps the narrow columns: a
    table refilled while hidden, at a width of 0, took the widest, and kept them."""
    client = running()
    app = ProgressApp(client)
    async with app.run_test(size=(40, 12)) as pilot:
        await client.played(pilot)
        history = app.query_one(HistoryTable)
        await pilot.press("h")
        await until(pilot, lambda: "✘ canceled in" in rendered(app, history))
        narrow = history.layout_shown
        await pilot.press("l")  # the log in the history's place
        await until(pilot, lambda: not history.display)
        newest = Run("f" * 12, NOW - 10, NOW - 6.8, State.CANCELED, State.ALMOST_DONE, ALICE, BOB)
        client.play(HistoryReceived((newest, *RUNS)))
        await client.played(pilot)
        await until(pilot, lambda: len(history.runs) == len(RUNS) + 1)
        # Refilled while hidden: for the width it will be shown at, whenever the next
        # layout comes (not the widest, for a width of 0).
        assert history.layout_shown == narrow
        await pilot.press("h")

        def narrow_again() -> None:
            shown = rendered(app, history)
            assert "ALMOST_DONE" in shown and "(ALMOST" not in shown, shown

        await eventually(pilot, narrow_again)


@pytest.mark.parametrize("size", [(40, 12), (40, 16), (45, 25), (60, 20), (80, 24)])
async def test_the_history_fits_a_narrow_pane(size: tuple[int, int]) -> None:
    """Narrow, the history takes fewer columns rather than hiding some off-screen: no
    horizontal scrolling, every outcome whole, a long name broken after its "@" or a
    "-", never mid-word, and at least its newest run in view."""
    client = running()
    app = ProgressApp(client)
    async with app.run_test(size=size) as pilot:
        await client.played(pilot)
        await pilot.press("h")
        history = app.query_one(HistoryTable)

        def fitted() -> None:
            assert history.max_scroll_x == 0
            assert history.virtual_size.width <= history.scrollable_content_region.width
            text = rendered(app, history)
            assert "Outcome" in text and "✘ canceled in" in text
            words = text.replace("│", " ").split()
            assert "alice@laptop" in words or ("alice@" in words and "laptop" in words)

        await eventually(pilot, fitted)
        text = rendered(app, history)
        # Hours and minutes are in either form: "23:54:39" today, "12-07 23:54" from a day
        # before (a run just past midnight).
        assert time.strftime("%H:%M", time.localtime(RUNS[0].started_at)) in text
        words = text.replace("│", " ").split()
        for word in words:  # every piece of a broken name ends where a break may be
            if word.startswith("bob@") or word in ("with-", "a-", "long-", "hostname"):
                assert word.endswith(("@", "-")) or word.endswith("hostname"), word
        assert_essentials_shown(app)


async def test_a_wide_history_has_a_column_each() -> None:
    """Where there is room, each fact has its column: who started, who canceled."""
    client = running()
    app = ProgressApp(client)
    async with app.run_test(size=(200, 60)) as pilot:
        await client.played(pilot)
        history = app.query_one(HistoryTable)
        assert history.layout_shown is not None and history.layout_shown.columns == COLUMNS
        assert "✘ CANCELED (IN_PROGRESS)" in rendered(app, history)


async def test_you_stays_you_after_a_reconnect() -> None:
    """A run this TUI started reads "(you)" also after the connection that started it is
    gone and a new one (a new client id) shows it."""
    client = ScriptedClient(
        Connecting(URL, 1),
        Connected(URL, "progress-server/9.8.7", "first"),
        StateReceived(StateSnapshot(State.STARTING, ID, 1, NOW, 2.0, started_at=NOW, by=ALICE)),
    )
    mine = Attribution("first", "alice@laptop")
    client.play(
        StateReceived(StateSnapshot(State.STARTING, ID, 2, NOW, 2.0, started_at=NOW, by=mine)),
        ConnectionLost(URL, "the server went away", 1001),
        Connecting(URL, 1),
        Connected(URL, "progress-server/9.8.7", "second"),
        StateReceived(StateSnapshot(State.STARTING, ID, 2, NOW, 2.0, started_at=NOW, by=mine)),
        HistoryReceived((Run("0ld", NOW - 60, NOW - 57, State.CANCELED, None, ALICE, mine),)),
    )
    app = ProgressApp(client)
    async with app.run_test(size=(120, 36)) as pilot:
        await client.played(pilot)
        assert app.mine == ("first", "second")
        assert "started by alice@laptop (you)" in rendered(app, app.query_one(CalculationView))
        assert "you" in rendered(app, app.query_one(HistoryTable)).split()


@pytest.mark.parametrize("size", [(40, 12), (60, 20)])
async def test_a_long_notification_leaves_the_state_and_progress_in_view(
    size: tuple[int, int],
) -> None:
    """The server's long sentence, in a small pane: the toast stands below the progress,
    one line that points to the log, where the whole sentence is; the state, the
    progress and the status are on screen as before."""
    client = running()
    app = ProgressApp(client)
    async with app.run_test(size=size, notifications=True) as pilot:
        await client.played(pilot)
        before = essentials(app)
        message = "A calculation is already running: cancel it with c, or wait for it to end."
        client.play(ServerError(Error(ErrorCode.ALREADY_RUNNING, message)))
        await client.played(pilot)
        assert [n.title for n in app._notifications] == ["Already running"]

        def toast_shown() -> None:
            screen = rendered(app, app.screen)
            assert "Already running" in screen and "details in the log: l" in screen

        await eventually(pilot, toast_shown)
        assert essentials(app)[0] == before[0]
        assert "▶ IN_PROGRESS" in essentials(app)[0]
        assert essentials(app)[2] == before[2]
        assert essentials(app)[1].rstrip().endswith("%")
        assert message in " ".join(entry.plain for entry in app.query_one(EventLog).entries)


async def test_the_event_log_breaks_a_url_after_a_slash() -> None:
    """At 80x24 the URL of the connection is never cut mid-word: its line breaks at a
    space or after a "/" (or a ":"), inside the width the scrollbar leaves."""
    client = running()
    app = ProgressApp(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await client.played(pilot)
        log = app.query_one(EventLog)
        lines = [line.strip("│ ") for line in rendered(app, log).splitlines()[1:-1]]
        breaks = ("ws://127.0.0.1:3003/", "ws://127.0.0.1:")  # (as the indent leaves room)
        assert any(line.endswith(breaks) for line in lines) or any(URL in line for line in lines)
        assert not any(line.endswith(("/progres", "progre", "3003/p")) for line in lines)
        assert log.max_scroll_x == 0


async def test_log_times_of_state_changes_are_the_servers() -> None:
    """A state change is logged at the time the server made it (its changed_at), so
    that TUIs that watched it write the same time; one that joined later writes it when
    it heard of it, and since when it holds (the log's times go forward)."""
    changed_at = time.mktime((2026, 12, 6, 9, 41, 7, 0, 0, -1))
    now = [changed_at + 125.0]
    client = running(changed_at=changed_at)
    app = ProgressApp(client, clock=lambda: now[0])
    async with app.run_test(size=(120, 36)) as pilot:
        await client.played(pilot)
        entries = [entry.plain for entry in app.query_one(EventLog).entries]
        assert entries[0].startswith("09:43:12 Connected to")
        assert entries[1] == f"09:43:12 IN_PROGRESS {ID} (since 09:41:07)"
        now[0] += 1.5
        client.play(StateReceived(StateSnapshot(State.SUCCESS, ID, 4, now[0] - 0.5, 2.0)))
        await client.played(pilot)
        assert app.query_one(EventLog).entries[-1].plain == f"09:43:13 SUCCESS {ID}"


async def test_an_unreachable_store_is_said_so() -> None:
    """The server's "unavailable" (its Redis is away): titled "Store unreachable", not a
    plain refusal; the log says the action is refused for now."""
    client = running()
    app = ProgressApp(client)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await client.played(pilot)
        message = "The state store cannot be reached; try again in a moment."
        client.play(ServerError(Error(ErrorCode.UNAVAILABLE, message)))
        await client.played(pilot)
        await until(pilot, lambda: bool(app._notifications))
        (notification,) = app._notifications
        assert notification.title == "Store unreachable"
        assert "Actions are refused for now" in notification.message
        log = " ".join(entry.plain for entry in app.query_one(EventLog).entries)
        assert "Store unreachable: the action refused for now." in log


async def test_a_notification_not_laid_out_yet_is_not_cleared() -> None:
    """Placing the notifications right after one came, before the screen laid it out
    (its region is still empty, at the top): it stays. Counting it as one that covers
    the progress cleared every notification, now and then, on a busy machine."""
    client = running()
    app = ProgressApp(client)
    async with app.run_test(size=(60, 20), notifications=True) as pilot:
        await client.played(pilot)
        app.notify("Something to say", title="Test")
        async with asyncio.timeout(TIMEOUT):
            while not toasts.shown(app.screen):
                await asyncio.sleep(0)
        assert not any(toast.region.area for toast in toasts.shown(app.screen))
        app._fit_toasts()
        assert [n.title for n in app._notifications] == ["Test"]
