"""What a user sees first, in every terminal, each a test: the log in time order and
scrolled to its newest line, r named for what it does and said once however often, a
refusal in a few words, q always in the keys, and a history that reads right at every
width."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from textual.widget import Widget
from textual.widgets import Footer

from progress_client.events import (
    ClientEvent,
    Connected,
    Connecting,
    ConnectionLost,
    HistoryReceived,
    ServerError,
    StateReceived,
    Waiting,
)
from progress_client.failures import brief_failure
from progress_protocol.messages import Error, ErrorCode
from progress_protocol.states import Attribution, Run, State, StateSnapshot
from progress_server.server import ProgressServer
from progress_tui.app import ProgressApp
from progress_tui.screens.help_screen import HelpScreen
from progress_tui.widgets.connection_bar import ConnectionStatusBar
from progress_tui.widgets.event_log import EventLog
from progress_tui.widgets.history_table import COLUMNS, HistoryTable
from progress_tui.widgets.key_bar import KeyBar
from tests.helpers import SteppedServer
from tests.tui.scripted import URL, connected_client, eventually, rendered, until
from tests.tui.test_app import connected, log_text, make_app, notified
from tests.tui.test_panes import ALICE, ID, NOW, running

# Times on screen are local time: the same everywhere (tests/tui/conftest.py).
pytestmark = pytest.mark.usefixtures("utc")

#: "16:28:48 " at the start of a log line.
TIME = re.compile(r"(\d\d):(\d\d):(\d\d) ")


def log_lines(app: ProgressApp) -> list[str]:
    return [entry.plain for entry in app.query_one(EventLog).entries]


def seconds(line: str) -> int:
    """A log line's time of day, in seconds."""
    match = TIME.match(line)
    assert match, line
    hours, minutes, secs = (int(part) for part in match.groups())
    return 3600 * hours + 60 * minutes + secs


# 1. The event log in time order.


async def test_a_fact_heard_late_is_logged_when_heard_and_says_since_when() -> None:
    """After an outage of the server's store, then on connecting again: the state the
    server changed at 16:28:39 comes after "16:28:48 Store unreachable". The log's times
    go forward, the latest news is the last line, and it says since when the state is
    what it is: "16:28:50 IN_PROGRESS ... (since 16:28:39)"."""
    changed_at = time.mktime((2026, 12, 7, 16, 28, 39, 0, 0, -1))
    now = [changed_at + 9]  # 16:28:48
    client = running(changed_at=changed_at - 30)  # IN_PROGRESS since 16:28:09, heard then
    app = ProgressApp(client, clock=lambda: now[0])
    async with app.run_test(size=(120, 36)) as pilot:
        now[0] = changed_at - 29
        await client.played(pilot)
        now[0] = changed_at + 9
        message = "The state store cannot be reached; try again in a moment."
        client.play(ServerError(Error(ErrorCode.UNAVAILABLE, message)))
        await client.played(pilot)
        now[0] = changed_at + 11  # the store is back: the news of 16:28:39 comes now
        snapshot = StateSnapshot(State.ALMOST_DONE, ID, 4, changed_at, 2.0, started_at=NOW)
        client.play(
            ConnectionLost(URL, "the server is going away (1001)", 1001),
            Connecting(URL, 2),
            Connected(URL, "progress-server/9.8.7", "c0ffee"),
            StateReceived(snapshot),
        )
        await client.played(pilot)
        lines = log_lines(app)
        assert lines[-1] == f"16:28:50 ALMOST_DONE {ID} (since 16:28:39)", lines
        assert [seconds(line) for line in lines] == sorted(seconds(line) for line in lines)
        assert any(line.startswith("16:28:48 Store unreachable") for line in lines)

        def shown() -> None:
            text = " ".join(rendered(app, app.query_one(EventLog)).split())
            assert f"16:28:50 ALMOST_DONE {ID} (since 16:28:39)" in text

        await eventually(pilot, shown)
        # A change seen as it happens: at the server's time, as every client logs it.
        now[0] = changed_at + 14
        client.play(StateReceived(StateSnapshot(State.SUCCESS, ID, 5, changed_at + 13, 2.0)))
        await client.played(pilot)
        assert log_lines(app)[-1] == f"16:28:52 SUCCESS {ID}"


# 2. r: named for what it does, and said once however often.


async def test_r_held_down_is_one_line_in_the_log(stepped: SteppedServer) -> None:
    """r pressed 30 times while connected: each resyncs, and the log says so on one
    line, "Resync requested (30 times)", updated in place; what it said before stays in
    view."""
    app = make_app(stepped.url)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        before = log_lines(app)
        await pilot.press(*"r" * 30)
        await until(
            pilot,
            lambda: log_lines(app)[-1].endswith("Resync requested (30 times)"),
            what=lambda: f"one line for 30 resyncs (the log: {log_lines(app)[-3:]})",
        )
        assert log_lines(app)[:-1] == before
        assert app.connected

        def one_line_on_screen() -> None:
            text = rendered(app, app.query_one(EventLog))
            assert text.count("Resync requested") == 1 and "(30 times)" in text, text
            assert "Connected to" in text

        await eventually(pilot, one_line_on_screen)


@pytest.mark.parametrize(("size", "keys"), [((100, 30), Footer), ((60, 20), KeyBar)])
async def test_r_is_named_resync_while_connected_and_reconnect_otherwise(
    size: tuple[int, int], keys: type[Widget]
) -> None:
    """Connected, r resyncs: the keys say "r Resync"; connection lost, it reconnects now:
    "r Reconnect" (in the Footer at 100 columns, in the key bar at 60)."""
    client = connected_client()
    app = ProgressApp(client)
    async with app.run_test(size=size) as pilot:
        await client.played(pilot)

        def named(words: str, other: str) -> Callable[[], None]:
            def check() -> None:
                shown = rendered(app, app.query_one(keys))
                assert words in shown and other not in shown, shown

            return check

        await eventually(pilot, named("r Resync", "Reconnect"))
        client.play(
            ConnectionLost(URL, "the server is going away (1001)", 1001),
            Waiting(URL, 60.0, 1e9, 2, "connection refused"),
        )
        await client.played(pilot)
        await eventually(pilot, named("r Reconnect", "Resync"))


# 3. l shows the newest lines.


def reconnecting(count: int) -> list[ClientEvent]:
    return [Waiting(URL, 1.0, 0.0, n, f"attempt {n - 1} failed") for n in range(2, count + 2)]


async def test_l_shows_the_newest_lines_of_the_log() -> None:
    """In a 40x12 pane the log is hidden: l shows its newest line, not its oldest; hidden
    again while more come, l shows the newest of those."""
    client = running()
    client.play(*reconnecting(30))
    app = ProgressApp(client)
    async with app.run_test(size=(40, 12)) as pilot:
        await client.played(pilot)
        log = app.query_one(EventLog)
        assert not log.display
        await pilot.press("l")

        def newest(attempt: int) -> Callable[[], None]:
            def check() -> None:
                text = " ".join(rendered(app, log).replace("│", " ").split())
                assert f"(attempt {attempt}): attempt {attempt - 1} failed" in text, text
                assert "Connected to" not in text

            return check

        await eventually(pilot, newest(31))
        await pilot.press("l")
        await until(pilot, lambda: not log.display)
        client.play(*reconnecting(40)[30:])
        await client.played(pilot)
        await pilot.press("l")
        await eventually(pilot, newest(41))


async def test_the_log_keeps_its_newest_line_when_the_history_opens() -> None:
    """At 80x24 the history opens above the log and makes it shorter: the newest line
    stays in view (it used to hide below, the scrollbar at the end)."""
    client = running()
    client.play(*reconnecting(20))
    app = ProgressApp(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await client.played(pilot)
        log = app.query_one(EventLog)
        await pilot.press("h")

        def newest_shown() -> None:
            shown = rendered(app, log).translate(str.maketrans("", "", "│▁▂▃▄▅▆▇█"))
            text = " ".join(shown.split())
            assert "(attempt 21): attempt 20 failed" in text, text

        await eventually(pilot, newest_shown)


async def test_l_and_help_are_not_covered_by_the_notification_that_sends_there() -> None:
    """At 40x12 a refusal's notification says "details in the log: l": pressing l (or
    ?) takes it away, so that it does not cover the lines it points to."""
    async with ProgressServer(port=0) as server:
        app = make_app(server.url.replace("/progress", "/wrong"))
        async with app.run_test(size=(40, 12)) as pilot:
            await until(pilot, lambda: bool(app._notifications), what="a notification")
            await pilot.press("l")
            await until(pilot, lambda: not app._notifications, what="it gone, l pressed")
            await pilot.press("r")  # refused again: a new notification
            await until(pilot, lambda: bool(app._notifications), what="a notification again")
            await pilot.press("question_mark")
            await until(pilot, lambda: not app._notifications, what="it gone, ? pressed")


# 4. A refusal in a few words on screen, whole in the log and on the help screen.


def said_in_the_bar(app: ProgressApp, why: str) -> None:
    """The bar says why it stopped, on one line; and that r tries again, where it fits
    (at 40 columns the keys say it)."""
    shown = rendered(app, app.query_one(ConnectionStatusBar)).strip()
    reason = why.removeprefix("refused: ")
    narrow = f"✘ {reason[:1].upper()}{reason[1:]}"
    assert shown in (f"✘ Stopped: {why} - press r to try again", f"✘ Stopped: {why}", narrow), shown


async def test_a_404_is_said_in_a_few_words_on_screen_and_whole_in_the_log() -> None:
    """progress-tui --url ws://HOST:PORT/wrong at 80x24: the server's 404 sentence
    lists every endpoint. The notification and the status bar say it in a few words,
    once each; the whole sentence is in the event log and on the help screen."""
    async with ProgressServer(port=0) as server:
        url = server.url.replace("/progress", "/wrong")
        app = make_app(url)
        made = notified(app)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.connection.stopped, what="stopped")
            why = "nothing at /wrong (HTTP 404)"
            assert made == [f"Stopped connecting: {why}. Press r to try again."]
            await eventually(pilot, lambda: said_in_the_bar(app, why))
            sentence = app.connection.details
            assert sentence is not None and "GET /healthz" in sentence  # every endpoint
            assert sentence in log_text(app)
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)

            def in_help() -> None:
                panel = app.screen.query_one("VerticalScroll")
                text = " ".join(rendered(app, panel).replace("│", " ").split())
                assert "Stopped: why" in text and "POST /cancel" in text, text

            await eventually(pilot, in_help)


@pytest.mark.parametrize(
    ("server_token", "path", "token", "why"),
    [
        (None, "/wrong", None, "nothing at /wrong (HTTP 404)"),
        ("t0ken", "/progress", None, "a token is needed (HTTP 401)"),
        ("t0ken", "/progress", "wrong", "token not accepted (HTTP 401)"),
    ],
    ids=["404", "401-missing", "401-wrong"],
)
async def test_the_status_bar_says_why_every_refusal_stopped_it(
    server_token: str | None, path: str, token: str | None, why: str
) -> None:
    """At 80 columns, and in a 40-column pane, the status bar keeps the reason of each
    refusal for good, a wrong path as a missing or a wrong token: each in a few words."""
    async with ProgressServer(port=0, token=server_token) as server:
        for size in ((80, 24), (40, 12)):
            app = make_app(server.url.replace("/progress", path), token=token)
            async with app.run_test(size=size) as pilot:
                await until(pilot, lambda app=app: app.connection.stopped, what="stopped")
                await eventually(pilot, lambda app=app: said_in_the_bar(app, why))


def test_a_refusal_in_a_few_words() -> None:
    """The sentences of progress_client.failures, cut short; any other is kept."""
    url = "ws://h:1/some/where"
    assert brief_failure("the server refused the token (HTTP 401)", url) == (
        "token not accepted (HTTP 401)"
    )
    assert brief_failure(
        "the server needs a token (HTTP 401): use --token or PROGRESS_TOKEN", url
    ) == ("a token is needed (HTTP 401)")
    assert brief_failure(
        "the server refused the connection (HTTP 404): There is nothing at /some/where.", url
    ) == ("nothing at /some/where (HTTP 404)")
    assert brief_failure("the server refused the connection (HTTP 403 Forbidden)", url) == (
        "refused (HTTP 403)"
    )
    assert brief_failure(
        "the server answered HTTP 200 instead of opening a WebSocket: is the path in the "
        "URL the WebSocket endpoint (/progress)?",
        url,
    ) == ("not a WebSocket endpoint (HTTP 200)")
    assert brief_failure("connection refused", url) == "connection refused"
    long = "ws://h:1/" + "x" * 100
    assert brief_failure("the server refused the connection (HTTP 404)", long) == (
        f"nothing at /{'x' * 31}… (HTTP 404)"
    )


# 5. q always in the keys.


@pytest.mark.parametrize(
    ("width", "expected"),
    [
        (40, "s Start c Cancel l Log h Hist ? q Quit"),
        (50, "s Start c Cancel r Resync l Log h Hist ? q Quit"),
        (60, "s Start c Cancel r Resync l Log h History ? Help q Quit"),
        (79, "s Start c Cancel r Resync l Log h History n Notify ? Help q Quit"),
    ],
)
async def test_q_quit_is_always_in_the_key_bar(width: int, expected: str) -> None:
    """Narrow, q Quit stands at the right end of the key bar, whatever else gives way;
    the others stand closer, then shorter ("? Help" becomes "?"), then the least useful
    go: n first, then r (it fits from 50 columns)."""
    client = connected_client()
    app = ProgressApp(client)
    async with app.run_test(size=(width, 24)) as pilot:
        await client.played(pilot)
        bar = app.query_one(KeyBar)

        def keys() -> None:
            shown = rendered(app, bar)
            assert " ".join(shown.split()) == expected, shown
            assert len(shown) == width, f"q Quit is not at the right end: {shown!r}"

        await eventually(pilot, keys)


# 6 and 7. The history: words, and each column apart from the next at every width.

#: Noon, the history's clock: every run is of today, whatever the time of the test.
NOON = time.mktime((2026, 12, 7, 12, 0, 0, 0, 0, -1))
LONG = Attribution("l0ng", "carol.with-a-rather-long-name@build-server-17.example.org")
BOB = Attribution("b0b", "bob@desk-with-a-long-hostname")
LONG_RUNS = (
    Run("a" * 12, NOON - 10, NOON - 7, State.CANCELED, State.ALMOST_DONE, LONG, ALICE),
    Run("c" * 12, NOON - 300, NOON - 296.8, State.CANCELED, State.IN_PROGRESS, ALICE, BOB),
    Run("d" * 12, NOON - 600, NOON - 594, State.SUCCESS, None, BOB, None),
    Run("b" * 12, NOON - 4000, NOON - 3994, State.SUCCESS, None, LONG, None),
)


async def test_the_narrow_history_says_what_happened_in_words() -> None:
    """Narrow, a run reads "✘ canceled in IN_PROGRESS", "by bob@desk-...", "started by
    alice@laptop", "✔ done": no glyph alone, and no name alone on a line of its own
    with a "✘"."""
    client = running()
    app = ProgressApp(client)
    async with app.run_test(size=(40, 16)) as pilot:
        await client.played(pilot)
        await pilot.press("h")
        history = app.query_one(HistoryTable)

        def in_words() -> None:
            text = rendered(app, history)
            lines = [line.strip("│ ▁▂▃▄▅▆▇█") for line in text.splitlines()]
            assert "✘ canceled in IN_PROGRESS" in text
            assert any(line.endswith("by bob@desk-with-a-long-") for line in lines), text
            assert "started by alice@laptop" in text and "✔ done" in text
            # Not "✘ IN_PROGRESS" (as if it had failed), "✔" alone, nor "✘ bob...".
            assert not any(line.endswith(("✘ IN_PROGRESS", "✔")) for line in lines), text
            assert "✘ bob" not in text, text

        await eventually(pilot, in_words)


def columns_apart(app: ProgressApp) -> None:
    """Every row of the history on screen, its cells whole in their columns (a name cut
    with an ellipsis, in the widest), each column a space at least from the next."""
    table = app.query_one(HistoryTable)
    lines = rendered(app, table).splitlines()[1:-1]  # inside the border
    region = table.scrollable_content_region
    assert table.max_scroll_x == 0 and table.virtual_size.width <= region.width
    widths = [column.get_render_width(table) for column in table.columns.values()]
    padding = table.cell_padding
    assert sum(widths) <= region.width
    rows = [[column.label.plain for column in table.columns.values()]]
    for index in range(table.row_count):
        cells = [cell.plain.split("\n") for cell in table.get_row_at(index)]
        height = max(len(cell) for cell in cells)
        rows += [[cell[n] if n < len(cell) else "" for cell in cells] for n in range(height)]
    for line, row in zip(lines, rows, strict=False):  # those in view
        x = 1  # the border
        for width, cell in zip(widths, row, strict=True):
            span = line[x : x + width].ljust(width)
            assert span[:padding] == " " * padding and span[-padding:] == " " * padding, (
                f"{span!r} touches its neighbour in {line!r}"
            )
            assert span.strip() == cell.strip(), f"{cell!r} is not whole in {line!r}"
            x += width


async def test_each_column_stands_apart_at_every_width() -> None:
    """From 40 to 250 columns, long names and all: each column of the history is whole,
    a space at least from the next; from 120 columns, each fact has its column (the
    names cut with an ellipsis, rather than fewer columns)."""
    client = running()
    client.play(HistoryReceived(LONG_RUNS))
    app = ProgressApp(client, clock=lambda: NOON)
    async with app.run_test(size=(120, 40)) as pilot:
        await client.played(pilot)
        app.history_choice = True
        history = app.query_one(HistoryTable)
        for width in (40, 47, 53, 60, 71, 80, 99, 119, 120, 160, 211, 250):
            await pilot.resize_terminal(width, 40)

            def fits(width: int = width) -> None:
                assert history.layout_for(history.scrollable_content_region.width) == (
                    history.layout_shown
                )
                columns_apart(app)
                layout = history.layout_shown
                assert layout is not None
                if width >= 120:
                    assert layout.columns == COLUMNS, f"{layout} at {width}"

            await eventually(pilot, fits)
        await pilot.resize_terminal(120, 40)

        def cut() -> None:
            text = rendered(app, history)
            assert "Canceled by" in text and "carol.with…" in text, text

        await eventually(pilot, cut)
