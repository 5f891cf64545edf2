"""The Textual app: the client's events become the screen's facts, the keys its actions.

:class:`ProgressApp` is handed its client (built by :mod:`progress_tui.cli`), follows
it in a worker through the :mod:`~progress_tui.mailbox`, keeps one reactive per fact
for the widgets to draw from, says why a key did nothing, and decides which panels and
notifications fit the terminal (``app.tcss`` lays them out; :mod:`progress_tui.toasts`
moves the notifications).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from functools import partial
from typing import ClassVar

from rich.cells import cell_len
from textual import constants, on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Container, Horizontal, Vertical
from textual.css.query import NoMatches
from textual.events import Resize
from textual.filter import LineFilter
from textual.geometry import Size
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Footer, Header, ProgressBar

from progress_client.client import NotConnected, ProgressClient
from progress_client.events import (
    ActionAccepted,
    ClientEvent,
    ClientsChanged,
    Closed,
    Connected,
    Connecting,
    ConnectionLost,
    ConnectionStatus,
    HistoryReceived,
    PresenceChanged,
    ServerError,
    StateReceived,
    StoreChanged,
    Waiting,
)
from progress_client.failures import brief_failure
from progress_client.notifications import alert, ended
from progress_client.wording import (
    attribution,
    countdown,
    describe_exception,
    printable,
    you_are,
)
from progress_protocol import __version__
from progress_protocol.messages import Command, ErrorCode, Presence
from progress_protocol.states import Run, State, StateSnapshot

from . import terminal, themes, toasts
from .ends import Ends, Notify
from .mailbox import FoldedReplies, Mailbox, QuietState, Summary
from .messages import NewsArrived
from .panel import PanelView
from .screens.help_screen import HelpScreen
from .settings import Settings, SettingsFile
from .status import (
    ERROR_TITLES,
    STORE_DOWN,
    ConnectionInfo,
    Identity,
    lost_on_resync,
    refusal,
)
from .widgets.calculation_view import CalculationView
from .widgets.connection_bar import ConnectionStatusBar
from .widgets.event_log import EventLog
from .widgets.history_table import HistoryTable
from .widgets.key_bar import KeyBar
from .widgets.state_banner import StateBanner
from .widgets.step_list import StepList

__all__ = ["KEYS", "ProgressApp"]

logger = logging.getLogger(__name__)

#: How long quitting waits for the server to answer the close frame.
QUIT_CLOSE_TIMEOUT = 0.1

#: How long an action may wait for its answer before the user is told.
PENDING_TIMEOUT = 5.0

#: Client ids remembered as this app's own (one per connection; the oldest go first).
MAX_IDS = 64

#: The least time between two takes from the mailbox, at most the screen's refresh
#: rate: what comes in between waits, and newer states replace older ones there. A
#: take that changes the state costs a layout of the screen (about 20 ms on a busy
#: 2-core machine), and no one reads more than 20 states a second.
TAKE_PERIOD = max(1 / 20, 1 / constants.MAX_FPS)
#: Events the network worker handles before it lets the rest of the app run.
WORKER_TURN = 16
#: Redraws of the Footer's keys (Start or Cancel dimmed or not) in any second.
KEYS_EACH = 4

#: The keys, for the help screen (the Footer shows them from BINDINGS).
KEYS: tuple[tuple[str, str], ...] = (
    ("s", "Start a calculation"),
    ("c", "Cancel the running calculation"),
    ("r", "Connected: resync (ask the server for its state and history again)."),
    ("", "Otherwise: reconnect now, or try again after giving up."),
    ("l", "Show or hide the event log"),
    ("h", "Show or hide the history"),
    ("n", "When to be told that a run ended (bell, desktop, here): mine, all, off"),
    ("? F1", "This help"),
    ("ctrl+p", "The command palette"),
    ("q ctrl+c", "Quit"),
)

#: From 80 columns the Footer holds the keys, and it has room for n's beside the others
#: only from this width: between the two, n is left out of it (q would be cut off).
FOOTER_FITS_NOTIFY = 88

#: Where the Footer does not fit, the key bar leaves out the last of these first; q is
#: always there, at its right end (as everywhere, q and ctrl+c quit). The panels a small
#: pane hides come before resync and reconnect (the status bar says "press r" when it
#: matters).
KEY_PRIORITY = (
    "start",
    "cancel",
    "toggle_log",
    "toggle_history",
    "help",
    "resync",
    "reconnect",
    "quit",
    "cycle_notify",
)
#: Always in the key bar, at its right end.
KEYS_PINNED = ("quit",)
#: Named in the key bar only where every key has room for its whole description: the
#: notifications' setting (the help screen and the palette have it).
KEYS_OPTIONAL = ("cycle_notify",)
#: The key bar's shorter descriptions, where the whole ones do not fit ("": the key
#: alone, "?").
KEYS_SHORT = {"help": "", "toggle_history": "Hist"}


class ProgressApp(App[None]):
    """The terminal client: one connection, the state on screen, keys to drive it.

    Args:
        client: The connection to follow and drive; the app iterates its events and
            closes it on quit.
        clock: Wall-clock time (progress, elapsed, log times); tests freeze it.
        now: The event loop's time (reconnect countdown); tests freeze it.
        animate: False freezes the spinners and the panel's ticker (for screenshots, and
            tests with a frozen clock).
        log_path: Where the log file is, named on the help screen and in errors.
        pending_timeout: How long an action waits for its answer before the user is told.
        notify: Which ends of a calculation ring the terminal's bell, send a desktop
            notification and show one here; ``n`` changes it.
        environ: The environment that says which terminal this is (the desktop
            notification's sequence depends on it); by default the process's.
        theme: The theme for this run (``--theme``); by default the one last chosen in
            the palette, remembered in ``settings`` (see :func:`themes.choose`).
        settings: Where the theme chosen in the palette is remembered; None: nowhere.
    """

    CSS_PATH = "app.tcss"
    # The ANSI colours of words (the event log's "red") as a dark theme shows them.
    ansi_theme_dark = reactive(themes.PALETTE, init=False)
    # Where the notifications stand: styled by the one module that knows Textual's toasts.
    CSS = toasts.CSS
    TITLE = "progress"
    # Nothing has the focus at first: the keys act on the app, and no button loses
    # the focus (rebuilding the Footer) each time the state disables it.
    AUTO_FOCUS = None
    # The Screen gets one class per axis; app.tcss lays the panels out by them. (Not
    # annotated: Textual declares them in a way a ClassVar annotation here cannot match.)
    HORIZONTAL_BREAKPOINTS = [  # noqa: RUF012
        (0, "-narrow"),
        (50, "-medium-width"),
        (80, "-wide"),
    ]
    VERTICAL_BREAKPOINTS = [  # noqa: RUF012
        (0, "-short"),
        (20, "-medium-height"),
        (30, "-tall"),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start"),
        # A key is never dropped silently: while Start (or Cancel) is dimmed, the same
        # key says why not. Textual tries a key's bindings in turn, skipping disabled ones.
        Binding("s", "refused('start')", show=False),
        Binding("c", "cancel", "Cancel"),
        Binding("c", "refused('cancel')", show=False),
        # r resynchronises while connected, and reconnects otherwise: the keys name
        # what it does now (check_action hides the other).
        Binding("r", "resync", "Resync"),
        Binding("r", "reconnect", "Reconnect"),
        Binding("l", "toggle_log", "Log"),
        Binding("h", "toggle_history", "History"),
        Binding("n", "cycle_notify", "Notify"),
        # Where the Footer has no room for it, n is not shown, and still works.
        Binding("n", "cycle_notify('unshown')", show=False),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    # The facts, one reactive each; the widgets render from them.
    snapshot: reactive[StateSnapshot | None] = reactive(None, init=False)
    history: reactive[tuple[Run, ...]] = reactive((), init=False)
    #: Every client id this app has had, oldest first (at most MAX_IDS): its own
    #: actions read "you", also those of a connection before a reconnect or failover.
    mine: reactive[tuple[str, ...]] = reactive((), init=False)
    #: The server's name and version, from its hello.
    server: reactive[str | None] = reactive(None, init=False)
    connection: reactive[ConnectionInfo] = reactive(
        ConnectionInfo(ConnectionStatus.CONNECTING, ""), init=False
    )
    clients: reactive[int | None] = reactive(None, init=False)
    #: Who the server takes this app for (its last hello); who is connected.
    identity: reactive[Identity | None] = reactive(None, init=False)
    presence: reactive[Presence | None] = reactive(None, init=False)
    #: Whether the server can reach the store its calculation lives in (Redis).
    store_reachable: reactive[bool] = reactive(True, init=False)
    #: Whether the server lets this app start a calculation (a viewer's may not).
    may_start: reactive[bool] = reactive(True, init=False)
    #: When the connection was lost, while it is: the screen's clock stands there.
    frozen_at: reactive[float | None] = reactive(None, init=False)
    #: The actions sent and not answered yet, oldest first: (request_id, action).
    in_flight: reactive[tuple[tuple[str, Command], ...]] = reactive((), init=False)
    #: The user's choice for each side panel; None follows the terminal's size.
    log_choice: reactive[bool | None] = reactive(None, init=False)
    history_choice: reactive[bool | None] = reactive(None, init=False)

    # Derived from the facts, by the watchers below.
    panel_view: reactive[PanelView | None] = reactive(None, init=False)
    stale: reactive[bool] = reactive(False, init=False)
    busy: reactive[bool] = reactive(False, init=False)

    def __init__(
        self,
        client: ProgressClient,
        *,
        clock: Callable[[], float] = time.time,
        now: Callable[[], float] | None = None,
        animate: bool = True,
        log_path: str | None = None,
        pending_timeout: float = PENDING_TIMEOUT,
        notify: Notify = Notify.MINE,
        environ: Mapping[str, str] | None = None,
        theme: str | None = None,
        settings: SettingsFile | None = None,
    ) -> None:
        # The terminal's own colours (or none) where it has few, or NO_COLOR: Textual
        # must know before it builds its filters (progress_tui/themes.py says why).
        self._plain = plain = themes.plain("NO_COLOR" in os.environ, themes.colour_system())
        super().__init__(ansi_color=True if plain else None)
        self._legible = [themes.Legible()] if plain else []
        for look in themes.THEMES.values():
            self.register_theme(look)
        self.settings = settings
        remembered = settings.load().theme if settings is not None else None
        known = list(self.available_themes)
        self._theme = self.theme = themes.choose(theme, remembered, plain=plain, known=known)
        self.client = client
        self.clock = clock
        self.now = now if now is not None else (lambda: asyncio.get_running_loop().time())
        self.spinning = animate
        self.log_path = log_path
        self.pending_timeout = pending_timeout
        self.sub_title = client.url
        self.set_reactive(
            ProgressApp.connection, ConnectionInfo(ConnectionStatus.CONNECTING, client.url)
        )
        self._answer_timers: dict[str, Timer] = {}
        #: The running calculation when the connection was lost (and the URL it was
        #: lost on), and the first state after reconnecting: is it gone from the server?
        self._lost_run: StateSnapshot | None = None
        self._lost_on = ""
        self._resynced: StateSnapshot | None = None
        #: The local refusals on screen (title, message) and until when: a held key
        #: repeats none of them.
        self._said: dict[tuple[str, str], float] = {}
        #: Until when no notification nobody here asked for is shown (one a second).
        self._unasked_until = float("-inf")
        #: Whether start and cancel can be sent, as the controls show it, and whether
        #: connected (r is named Resync or Reconnect).
        self._can: tuple[bool, bool, bool] | None = None
        #: What the network worker has for the screen and the screen has not taken.
        self.mailbox = Mailbox()
        #: The loop time before which the mailbox is not taken again.
        self._next_take = 0.0
        self._take_timer: Timer | None = None
        #: The end of the mailbox's window a timer sums up, and that timer.
        self._summary_due: float | None = None
        self._summary_timer: Timer | None = None
        #: When the Footer's keys were redrawn last (at most KEYS_EACH times), and the
        #: timer of a redraw held back.
        self._keys_drawn: deque[float] = deque(maxlen=KEYS_EACH)
        self._keys_timer: Timer | None = None
        #: Which ends of a calculation are told, and to which terminal.
        self.ends = Ends(notify)
        self.environ = os.environ if environ is None else environ
        self._notify_key_shown = True

    def compose(self) -> ComposeResult:
        yield Header(icon="")
        with Container(id="body"):
            with Vertical(id="calculation"):
                yield StateBanner().data_bind(
                    view=ProgressApp.panel_view,
                    connection=ProgressApp.connection,
                    stale=ProgressApp.stale,
                )
                yield CalculationView(clock=self.clock, animate=self.spinning).data_bind(
                    view=ProgressApp.panel_view,
                    connection=ProgressApp.connection,
                    mine=ProgressApp.mine,
                    frozen_at=ProgressApp.frozen_at,
                    busy=ProgressApp.busy,
                    may_start=ProgressApp.may_start,
                )
                yield StepList(classes="optional").data_bind(view=ProgressApp.panel_view)
                with Horizontal(id="buttons"):
                    yield Button("Start", id="start", variant="success")
                    yield Button("Cancel", id="cancel", variant="error")
            with Vertical(id="side"):
                yield HistoryTable(clock=self.clock).data_bind(
                    runs=ProgressApp.history, mine=ProgressApp.mine
                )
                yield EventLog(clock=self.clock)
        yield ConnectionStatusBar(now=self.now, rtt=lambda: self.client.rtt).data_bind(
            info=ProgressApp.connection,
            clients=ProgressApp.clients,
            identity=ProgressApp.identity,
            presence=ProgressApp.presence,
            store_reachable=ProgressApp.store_reachable,
        )
        yield Footer()
        yield KeyBar(
            priority=KEY_PRIORITY, pinned=KEYS_PINNED, optional=KEYS_OPTIONAL, short=KEYS_SHORT
        )

    def get_line_filters(self) -> Sequence[LineFilter]:
        return [*super().get_line_filters(), *self._legible]

    def watch_theme(self, theme: str) -> None:
        """A theme chosen in the palette is remembered for the next run."""
        if self._plain:  # (Textual 6 unsets it for any theme but its own ANSI one)
            self.ansi_color = True
        if theme != self._theme and self.settings is not None:
            self._theme = theme
            self.settings.save(Settings(theme=theme))

    def on_mount(self) -> None:
        self._fit_notify_key(self.size.width)
        self._sync_panels()
        self._sync_controls()
        self._follow()

    def _follow(self) -> None:
        """Start (or start again) the network worker: a fresh iteration of the client's
        events, which begins at attempt 1 (what is left of an ended one is cancelled)."""
        self.run_worker(self._follow_server(), name="connection", exclusive=True)

    async def _follow_server(self) -> None:
        """The network worker: the client's events go to the mailbox, and the app is
        woken when there is news (never more than one wake-up in Textual's queue).

        Its boundary: an error of the loop itself is logged and shown as the loop
        stopping, which ``r`` starts again; it never reaches Textual.
        """
        loop = asyncio.get_running_loop()
        count = 0
        try:
            async with aclosing(self.client.events()) as events:
                async for event in events:
                    # Too many replies waiting (a hostile server): stop reading.
                    await self.mailbox.room()
                    self._post(event, loop.time())
                    count += 1
                    if count % WORKER_TURN == 0:
                        # One read from the socket may hold thousands of messages,
                        # decoded without a pause: let the screen have its turn.
                        await asyncio.sleep(0)
        except Exception as exc:
            logger.exception("the connection loop failed")
            where = f" ({self.log_path})" if self.log_path else ""
            reason = f"an unexpected error, {describe_exception(exc)}; see the log file{where}"
            self._post(Closed(reason), loop.time())

    def _post(self, event: ClientEvent, now: float) -> None:
        if self.mailbox.put(event, now):
            self.post_message(NewsArrived())

    # What the server says.

    @on(NewsArrived)
    def _news_arrived(self) -> None:
        """Take the news now, or once TAKE_PERIOD has passed since the last take."""
        wait = self._next_take - asyncio.get_running_loop().time()
        if wait <= 0:
            self._take_news()
        elif self._take_timer is None:
            self._take_timer = self.set_timer(wait, self._take_news)

    def _take_news(self) -> None:
        """Apply everything in the mailbox, in order."""
        self._take_timer = None
        if not self.query(EventLog):  # not while the app is shutting down
            return
        self._next_take = asyncio.get_running_loop().time() + TAKE_PERIOD
        for entry in self.mailbox.take():
            try:
                match entry:
                    case QuietState(received=received):
                        self.apply(received, listed=False)
                    case Summary():
                        self._sum_up(entry)
                    case FoldedReplies(count=count, last=last):
                        self._say_folded(count, last)
                    case _:
                        self.apply(entry)
            except Exception:
                # A bug, or server data the screen cannot take: this connection is given
                # up and retried with the backoff, rather than the app stopped.
                logger.exception("cannot show %r", entry)
                self.client.abandon(
                    "an unexpected error while showing the server's data; see the log file"
                )
        self._arm_summary()

    def _arm_summary(self) -> None:
        """A burst that stops is summed up at the end of its window, not at the next
        change, which may never come."""
        due = self.mailbox.summary_due
        if due is None or due == self._summary_due:
            return
        if self._summary_timer is not None:
            self._summary_timer.stop()
        self._summary_due = due
        # (Not 0: a Textual timer of no interval fails when it is stopped.)
        delay = max(due - asyncio.get_running_loop().time(), 0.001)
        self._summary_timer = self.set_timer(delay, partial(self._end_window, due))

    def _end_window(self, due: float) -> None:
        self._summary_timer = self._summary_due = None
        if self.mailbox.end_window(due):
            self.post_message(NewsArrived())
        self._arm_summary()

    def _sum_up(self, summary: Summary) -> None:
        changes = "change" if summary.changes == 1 else "changes"
        self.query_one(EventLog).add(
            f"{summary.changes} more {changes} in {summary.seconds:g} s, "
            f"the last: {self._describe_change(summary.last)}",
            _style(summary.last.state),
            at=summary.last.changed_at,
        )

    def _may_interrupt(self) -> bool:
        """Whether a notification nobody here asked for may be shown now: one a second
        at most, whatever a server sends."""
        now = self.now()
        if now < self._unasked_until:
            return False
        self._unasked_until = now + 1.0
        return True

    def _say_folded(self, count: int, last: ActionAccepted | ServerError) -> None:
        """Replies nobody here asked for, too many to show each: one line for them."""
        if isinstance(last, ServerError):
            title = ERROR_TITLES.get(last.error.code, "Refused")
            what = f"{title}: {last.error.message}"
        else:
            what = f"{last.ack.action} accepted"
        replies = "reply" if count == 1 else "replies"
        self.query_one(EventLog).add(
            f"{count} more {replies} from the server, asked by nobody here (the last: {what})",
            "red",
        )

    async def on_unmount(self) -> None:
        self.mailbox.close()
        await self.client.close()

    def apply(self, event: ClientEvent, *, listed: bool = True) -> None:
        """Update the screen's facts from one client event.

        A state changed is listed in the event log, unless ``listed`` is False (the
        mailbox sums it up with others: see :mod:`progress_tui.mailbox`).

        Every text from the server (its name, ids, names, error sentences, close
        reasons) is shown as plain text: widgets get ``Content``/``Text``, notifications
        ``markup=False``, and :func:`printable` replaces any control character.

        The URL shown is the event's: the client may have moved on to the next one by
        the time its event is applied.
        """
        log = self.query_one(EventLog)
        several = len(self.client.urls) > 1
        match event:
            case Connecting(url=url, attempt=attempt):
                self.connection = ConnectionInfo(ConnectionStatus.CONNECTING, url, attempt)
                self.sub_title = url
            case Connected(url=url, server=server, client_id=client_id):
                self.identity = Identity(event.name, event.role, event.commands)
                self.store_reachable = True  # unless the server says otherwise at once
                self.connection = ConnectionInfo(ConnectionStatus.CONNECTED, url)
                self.sub_title = url
                self.server = server
                if client_id not in self.mine:
                    self.mine = (*self.mine, client_id)[-MAX_IDS:]
                you = you_are(event.name, event.role)
                log.add(f"Connected to {url} ({server}){f' as {you}' if you else ''}", "green")
            case StateReceived(snapshot=snapshot):
                previous = self.snapshot
                self.snapshot = snapshot
                self.frozen_at = None
                if self.ends.tell(snapshot):
                    self._tell_end(snapshot)
                if listed and (previous is None or previous != snapshot):
                    # At the server's time of the change: a client that saw it happen
                    # and one that joined later write the same line.
                    log.add(
                        self._describe_change(snapshot),
                        _style(snapshot.state),
                        at=snapshot.changed_at,
                    )
                if self._lost_run is not None and self._resynced is None:
                    self._resynced = snapshot
                    self._check_lost_run(None)
            case HistoryReceived(runs=runs):
                self.history = runs
                if self._lost_run is not None and self._resynced is not None:
                    self._check_lost_run(runs)
            case ClientsChanged(count=count):
                self.clients = count
            case PresenceChanged(presence=presence):
                self.presence = presence
            case StoreChanged(reachable=reachable) if reachable != self.store_reachable:
                self.store_reachable = reachable
                if not reachable:
                    # The run stands still until the store is back: so does the clock.
                    if self.frozen_at is None and self.snapshot is not None:
                        self.frozen_at = self.clock()
                    log.add(f"{STORE_DOWN}; actions are refused until then", "red")
                else:
                    if self.connected:
                        self.frozen_at = None
                    log.add("Store reachable again: the calculation goes on", "green")
            case ActionAccepted(ack=ack):
                # (An ack answers this client's own request.)
                if ack.action == "start":
                    self.ends.started(ack.calculation_id)
                else:
                    self.ends.canceled(ack.calculation_id)
                self._settle(ack.request_id)
            case ServerError(error=error) if error.code == ErrorCode.UNAVAILABLE:
                # Not a refusal of this action but a "not now": the server's store
                # is away, and every action is refused until it is back.
                action = self._action_of(error.request_id) or "the action"
                log.add(f"Store unreachable: {action} refused for now. {error.message}", "red")
                self._toast(
                    f"{error.message.rstrip('.')}. Actions are refused for now.",
                    title=ERROR_TITLES[error.code],
                    severity="error",
                )
                self._settle(error.request_id)
            case ServerError(error=error):
                title = ERROR_TITLES.get(error.code, "Refused")
                if self._action_of(error.request_id) is not None or self._may_interrupt():
                    # A notification answers a key of this app's; of what nobody here
                    # asked for (a server flooding errors), one a second at most.
                    self._toast(error.message, title=title, severity="error")
                log.add(f"Refused: {error.message}", "red")
                self._settle(error.request_id)
            case ConnectionLost(url=url, reason=reason):
                self.connection = ConnectionInfo(ConnectionStatus.DISCONNECTED, url, error=reason)
                log.add(f"Connection{f' to {url}' if several else ''} lost: {reason}", "bold red")
                self._lose_connection()
            case Waiting() if several:
                self._fail_over(event)
            case Waiting(url=url, delay=delay, retry_at=retry_at, attempt=attempt, error=why):
                brief = brief_failure(why, url)
                self.connection = ConnectionInfo(
                    ConnectionStatus.RECONNECTING, url, attempt, retry_at, brief, details=why
                )
                log.add(f"Reconnecting in {countdown(delay)} (attempt {attempt}): {why}", "yellow")
            case Closed(reason=reason):
                url = self.connection.url  # the URL it tried last
                if reason == "closed":  # closed by this app (quitting)
                    self.connection = ConnectionInfo(ConnectionStatus.DISCONNECTED, url)
                    return
                # On screen in a few words; the whole sentence (a server's 404 lists
                # every endpoint) in the log and on the help screen.
                brief = brief_failure(reason, url)
                self.connection = ConnectionInfo(
                    ConnectionStatus.DISCONNECTED, url, error=brief, stopped=True, details=reason
                )
                log.add(f"Stopped: {reason.rstrip('.')}. Press r to try again.", "bold red")
                self._toast(
                    f"{brief.rstrip('.')}. Press r to try again.",
                    title="Stopped connecting",
                    severity="error",
                    timeout=10,
                )
                self._lose_connection()

    def _fail_over(self, waiting: Waiting) -> None:
        """A wait before the next URL: say which one failed, and where the client goes."""
        log = self.query_one(EventLog)
        failed, why = self.connection.url, waiting.error  # the attempt's or connection's
        brief = brief_failure(why, failed)
        if waiting.permanent:
            log.add(f"Left out {failed}: {why}", "bold red")
            self._toast(
                f"{failed}: {brief.rstrip('.')}. The other URLs are tried.",
                title="URL left out",
            )
        url, attempt = waiting.url, waiting.attempt
        self.connection = ConnectionInfo(
            ConnectionStatus.RECONNECTING,
            url,
            attempt,
            waiting.retry_at,
            f"{failed}: {brief}",
            details=f"{failed}: {why}",
        )
        if url != failed and waiting.delay == 0:
            log.add(f"Failing over to {url} (attempt {attempt}): {failed}: {why}", "yellow")
        else:
            log.add(
                f"Reconnecting to {url} in {countdown(waiting.delay)} (attempt {attempt}): "
                f"{failed}: {why}",
                "yellow",
            )

    def _describe_change(self, snapshot: StateSnapshot) -> str:
        """One log line: "STARTING 3b6188a98e7a by alice@laptop"."""
        text = f"{snapshot.state} {snapshot.calculation_id or ''}".rstrip()
        if snapshot.by is not None:
            text += f" {attribution(snapshot.by, self.mine)}"
        if snapshot.canceled_during is not None:
            text += f" during {snapshot.canceled_during}"
        return text

    def _lose_connection(self) -> None:
        """The live connection is gone: freeze the clock, forget the pending answers."""
        if self.frozen_at is None and self.snapshot is not None:
            self.frozen_at = self.clock()
            running = self.snapshot.state.is_running
            self._lost_run = self.snapshot if running else None
            self._lost_on = self.connection.url
            self._resynced = None
        for request_id, action in self.in_flight:
            self.query_one(EventLog).add(f"No answer to {action}: the connection was lost", "red")
            self._settle(request_id)

    def _check_lost_run(self, history: tuple[Run, ...] | None) -> None:
        """After a resync: say so if the calculation that was running is gone."""
        before, after = self._lost_run, self._resynced
        if before is None or after is None:
            return
        lost = lost_on_resync(before, after, history)
        if lost is None:  # the history will tell
            return
        self._lost_run = self._resynced = None
        if lost:
            assert before.calculation_id is not None
            url = self.connection.url
            why = "the server restarted" if url == self._lost_on else f"{url} does not have it"
            message = f"Calculation {printable(before.calculation_id)} was lost: {why}"
            self.query_one(EventLog).add(message, "bold red")
            logger.warning("%s", message)
            self._toast(message, title="Calculation lost")

    def _tell_end(self, snapshot: StateSnapshot) -> None:
        """A run this app saw coming ended: the terminal's bell and desktop notification
        (progress_client/notifications.py picks the sequence for the terminal), and a
        notification here."""
        notice = ended(snapshot, self.mine)
        terminal.write(self, alert(notice, self.environ))
        done = snapshot.state is State.SUCCESS
        self._toast(
            notice.body,
            title="Calculation done" if done else "Calculation canceled",
            severity="information" if done else "warning",
        )

    # What the user asks for.

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Start and Cancel show dimmed in the Footer while they would be refused; n
        shows where the keys have room for it (the same key works unshown)."""
        if action in ("start", "cancel"):
            return True if self.refusal(action) is None else None  # type: ignore[arg-type]
        if action == "cycle_notify" and not parameters:
            return self._notify_key_shown
        if action == "resync":
            return self.connected
        return True

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @property
    def running(self) -> bool:
        return self.panel_view is not None and self.panel_view.state.is_running

    @property
    def expects_running(self) -> bool:
        """Whether a calculation runs once the server has the actions sent so far."""
        if self.in_flight:
            return self.in_flight[-1][1] == "start"
        return self.running

    def refusal(self, action: Command) -> tuple[str, str] | None:
        """Why ``action`` cannot be sent now, as (title, sentence); None if it can."""
        return refusal(
            action,
            self.connection,
            expects_running=self.expects_running,
            identity=self.identity,
            store_reachable=self.store_reachable,
        )

    async def action_start(self) -> None:
        await self._ask("start")

    async def action_cancel(self) -> None:
        await self._ask("cancel")

    def action_refused(self, action: Command) -> None:
        """The key of a dimmed action: say why it is not sent."""
        refusal = self.refusal(action)
        if refusal is not None:
            self._say(*refusal)

    async def _ask(self, action: Command) -> None:
        refusal = self.refusal(action)
        if refusal is not None:
            self._say(*refusal)
        else:
            await self._request(action)

    async def action_resync(self) -> None:
        """Connected: ask for the state and the history again (the connection is kept).
        Said once in the log, however often (a held key counts on one line)."""
        if not self.connected:
            await self.action_reconnect()
            return
        self.query_one(EventLog).add("Resync requested", "yellow", repeats=True)
        try:
            await self.client.send("status")
            await self.client.send("history")
        except NotConnected as exc:
            self._say("Not connected", f"Cannot resynchronise: {exc}.")

    async def action_reconnect(self) -> None:
        """Connected: resynchronise (the connection is kept). Waiting: reconnect now.
        Stopped: start the connection loop again."""
        log = self.query_one(EventLog)
        if self.connected:
            await self.action_resync()
        elif self.connection.stopped:
            log.add("Trying again (asked by the user)", "yellow")
            self.connection = ConnectionInfo(ConnectionStatus.CONNECTING, self.client.url)
            self._follow()
        else:
            log.add("Reconnecting now (asked by the user)", "yellow")
            self.client.reconnect_now()

    def action_toggle_log(self) -> None:
        self.log_choice = show = not self.query_one(EventLog).display
        if show:
            # A notification pointing at the log ("details in the log: l") would cover
            # its newest lines: what it said is there now.
            self.clear_notifications()
            if self._room_for_one_panel():
                self.history_choice = False

    def action_toggle_history(self) -> None:
        self.history_choice = show = not self.query_one(HistoryTable).display
        if show and self._room_for_one_panel():
            self.log_choice = False

    def action_cycle_notify(self, unshown: str = "") -> None:
        """n: which ends are told, mine -> all -> off -> mine; the new setting is said.
        (``unshown``: the binding of n that the keys do not show.)"""
        choice = self.ends.choice = self.ends.choice.following
        self._toast(f"{choice}: {choice.meaning}", title="Notify", severity="information")

    def _room_for_one_panel(self) -> bool:
        """Below the calculation in a short pane, two panels would leave neither a
        useful row: l and h then switch between the log and the history."""
        width, height = self.size
        return width < 80 and height < 20

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.clear_notifications()  # the help screen says it all, uncovered
        server = printable(self.server) if self.server else "not connected yet"
        about = [("URL", self.client.url)]
        others = [url for url in self.client.urls if url != self.client.url]
        if others:
            about.append(("Fails over to", ", ".join(others)))
        about.append(("Server", server))
        info = self.connection
        why = info.details or info.error
        if why and not info.connected:  # whole, where the screen has it in a few words
            about.append(("Stopped: why" if info.stopped else "Last failure", why))
        about += [
            ("Your name", printable(self.client.name) if self.client.name else "(none)"),
            ("Notify", f"{self.ends.choice}: {self.ends.choice.meaning} (n changes it)"),
        ]
        if self.log_path:
            about.append(("Log file", self.log_path))
        self.push_screen(HelpScreen(title=f"progress-tui {__version__}", keys=KEYS, about=about))

    async def action_quit(self) -> None:
        # Nothing more is taken; a worker held back by a full mailbox reads on, so that
        # the server's close frame is read.
        self.mailbox.close()
        # The close frame goes out at once; what the server still has to say (behind a
        # flood, megabytes) is not waited for long: quitting is instant.
        self.client.close_timeout = QUIT_CLOSE_TIMEOUT
        await self.client.close()
        self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:  # type: ignore[type-arg]
        """The command palette: the app's own commands first, then Textual's."""
        yield SystemCommand("Start", "Start a calculation", partial(self._ask, "start"))
        yield SystemCommand(
            "Cancel", "Cancel the running calculation", partial(self._ask, "cancel")
        )
        if self.connected:  # named for what r does now, as in the keys
            yield SystemCommand(
                "Resync", "Ask the server for its state and history again", self.action_resync
            )
        else:
            yield SystemCommand("Reconnect", "Try to connect now", self.action_reconnect)
        yield SystemCommand("Toggle log", "Show or hide the event log", self.action_toggle_log)
        yield SystemCommand(
            "Toggle history", "Show or hide the history of runs", self.action_toggle_history
        )
        yield SystemCommand(
            "Notify",
            "When to be told that a run ended: mine, all, off (the next one)",
            self.action_cycle_notify,
        )
        yield SystemCommand("Help", "The keys, the server and your name", self.action_help)
        yield SystemCommand("Quit", "Close the connection and quit", self.action_quit)
        for command in super().get_system_commands(screen):
            # Textual's Keys repeats Help; its Quit is ours above.
            if command.title not in ("Quit", "Keys"):
                yield command

    @on(Button.Pressed, "#start")
    async def _start_pressed(self) -> None:
        await self._ask("start")

    @on(Button.Pressed, "#cancel")
    async def _cancel_pressed(self) -> None:
        await self._ask("cancel")

    async def _request(self, action: Command) -> None:
        try:
            request_id = await self.client.send(action)
        except NotConnected as exc:
            self._say("Not connected", f"Cannot {action}: {exc}.")
            return
        self.mailbox.expect(request_id)
        self._answer_timers[request_id] = self.set_timer(
            self.pending_timeout, partial(self._no_answer, request_id)
        )
        self.in_flight = (*self.in_flight, (request_id, action))

    def _no_answer(self, request_id: str) -> None:
        actions = [action for sent, action in self.in_flight if sent == request_id]
        if not actions:
            return
        self._settle(request_id)
        message = f"No answer from the server to {actions[0]} within {self.pending_timeout:g} s."
        self.query_one(EventLog).add(message, "red")
        self._toast(message, title="No answer", severity="error")

    def _settle(self, request_id: str | None) -> None:
        """The answer to one request came (or will never come)."""
        if request_id is None:
            return
        self.mailbox.settled(request_id)
        timer = self._answer_timers.pop(request_id, None)
        if timer is not None:
            timer.stop()
        self.in_flight = tuple(item for item in self.in_flight if item[0] != request_id)

    def _say(self, title: str, message: str) -> None:
        """A notification of why a key did nothing, once while it is on screen."""
        now = self.now()
        self._said = {key: until for key, until in self._said.items() if until > now}
        if (title, message) in self._said:
            return
        self._said[(title, message)] = now + self.NOTIFICATION_TIMEOUT
        self.query_one(EventLog).add(f"{title}: {message}", "yellow")
        self._toast(message, title=title)

    def _toast(
        self,
        message: str,
        *,
        title: str,
        severity: SeverityLevel = "warning",
        timeout: float | None = None,
    ) -> None:
        """A notification, as plain text (its words may be the server's), that never
        covers the state's name, the progress nor the connection status.

        Wide, with a side panel, it stands over the panel. Otherwise it spans the width
        below the progress, its title above one line: a longer message is in the event
        log, and the line says so; and older notifications give way when one more would
        not fit there (they are all in the event log).
        """
        screen = self.query_one("#body").screen
        if not toasts.are_beside(screen):
            if cell_len(message) > self.size.width - toasts.FRAME:
                log = self.query_one(EventLog)
                message = "details in the event log" if log.display else "details in the log: l"
            room = self._room_below()
            if room is not None and 2 * (len(toasts.shown(screen)) + 1) > room:
                self.clear_notifications()
        self.notify(
            printable(message), title=title, severity=severity, timeout=timeout, markup=False
        )
        self.call_after_refresh(self._fit_toasts)

    def _room_below(self) -> int | None:
        """The rows between the progress and the status bar, as laid out; None before
        the first layout."""
        caption = self.query_one(StateBanner).query_one("#caption")
        bar = self.query_one(CalculationView).query_one(ProgressBar)
        status = self.query_one(ConnectionStatusBar)
        if status.region.y <= 0:
            return None
        return status.region.y - max(caption.region.bottom, bar.region.bottom)

    def _fit_toasts(self) -> None:
        """Place the notifications for the layout as it is now: over the side panels
        (wide), or below the progress, the older ones giving way if they would cover
        it (after a resize, or a notification that is not the app's)."""
        try:
            side = self.query_one("#side")
            status = self.query_one(ConnectionStatusBar)
            room = self._room_below()
        except NoMatches:  # not composed yet, or shutting down
            return
        if room is None:
            return
        screen = status.screen
        beside = toasts.are_beside(screen)
        left = side.region.x if beside else 0
        if not toasts.place(screen, left=left, bottom=screen.size.height - status.region.y):
            return
        if not beside:
            top = status.region.y - room
            # A toast not laid out yet has an empty region, at the top: not one that
            # covers anything (counting it cleared every notification, now and then).
            laid_out = [toast for toast in toasts.shown(screen) if toast.region.area]
            if any(toast.region.y < top for toast in laid_out):
                self.clear_notifications()

    def _action_of(self, request_id: str | None) -> Command | None:
        """The action sent with ``request_id`` and not answered yet."""
        return next((action for sent, action in self.in_flight if sent == request_id), None)

    # Derived views.

    def watch_snapshot(self) -> None:
        self.panel_view = (
            None if self.snapshot is None else PanelView.of(self.snapshot, self.history)
        )

    def watch_history(self) -> None:
        self.watch_snapshot()

    def watch_frozen_at(self) -> None:
        self.stale = self.frozen_at is not None

    def watch_panel_view(self) -> None:
        self._sync_controls()
        self.call_after_refresh(self._fit_toasts)

    def watch_connection(self) -> None:
        self._sync_controls()
        self.call_after_refresh(self._fit_toasts)

    def watch_in_flight(self) -> None:
        self.busy = bool(self.in_flight)
        self._sync_controls()

    def watch_log_choice(self) -> None:
        self._sync_panels()

    def watch_history_choice(self) -> None:
        self._sync_panels()

    def watch_identity(self, identity: Identity | None) -> None:
        self.may_start = identity is None or identity.may("start")
        self._sync_controls()  # a viewer's s and c are dimmed, and say why

    def watch_store_reachable(self) -> None:
        self._sync_controls()  # refused while the store is away: dimmed, and say why

    def on_resize(self, event: Resize) -> None:
        self._sync_panels(event.size)  # (self.size is still the old one here)
        self._fit_notify_key(event.size.width)

    def _fit_notify_key(self, width: int) -> None:
        """Show n among the keys unless the Footer has no room for it; the key bar,
        below 80 columns, leaves it out by itself where it does not fit."""
        shown = not 80 <= width < FOOTER_FITS_NOTIFY
        if shown != self._notify_key_shown:
            self._notify_key_shown = shown
            self.refresh_bindings()

    def _sync_controls(self) -> None:
        if not self.query("#buttons"):  # not composed yet
            return
        # (Connected or not: r resyncs or reconnects, and the keys say which.)
        can = (self.refusal("start") is None, self.refusal("cancel") is None, self.connected)
        if can == self._can:  # the Footer is rebuilt on each refresh: only on a change
            return
        self._can = can
        self.query_one("#start", Button).disabled = not can[0]
        self.query_one("#cancel", Button).disabled = not can[1]
        self._refresh_keys()

    def _refresh_keys(self) -> None:
        """Redraw the keys in the Footer (which rebuilds it) at most KEYS_EACH times in
        any second; one over that waits its turn, showing what is true by then. Runs
        that follow each other faster (a flood) would rebuild it at every frame."""
        if self._keys_timer is not None:  # a redraw is due: it will show this too
            return
        now = asyncio.get_running_loop().time()
        drawn = self._keys_drawn
        if len(drawn) == drawn.maxlen and now - drawn[0] < 1.0:
            self._keys_timer = self.set_timer(drawn[0] + 1.0 - now, self._keys_due)
            return
        drawn.append(now)
        # Textual's Footer keeps a watcher for every key it ever drew, and lets go of
        # those of removed keys only when its `compact` changes: make it so, or each
        # redraw would keep its keys for ever.
        for footer in self.query(Footer):
            footer.mutate_reactive(Footer.compact)
        self.refresh_bindings()

    def _keys_due(self) -> None:
        self._keys_timer = None
        if self.screen_stack:  # not once the app is shutting down
            self._refresh_keys()

    def _sync_panels(self, size: Size | None = None) -> None:
        """Show the event log and the history where they fit, or as the user chose."""
        if not self.query("#side"):  # not composed yet
            return
        width, height = size or self.size
        # Wide: beside the calculation (48 cells at least); otherwise below it. The
        # history's columns need about 72 cells.
        side_width = width - 48 if width >= 80 else width
        log_fits = width >= 80 or height >= 30
        history_fits = side_width >= 72 and height >= (24 if width >= 80 else 40)
        show_log = log_fits if self.log_choice is None else self.log_choice
        show_history = history_fits if self.history_choice is None else self.history_choice
        self.query_one(EventLog).display = show_log
        self.query_one(HistoryTable).display = show_history
        self.query_one("#side").display = show_log or show_history
        self.query_one("#side").set_class(show_log and show_history, "-both")
        # Short and a side panel shown: the calculation keeps only its essential lines.
        body = self.query_one("#body")
        body.set_class(show_log or show_history, "-side-shown")
        # Notifications: over the side panels where they are beside the calculation,
        # below the progress otherwise (_fit_toasts places them).
        toasts.set_beside(body.screen, width >= 80 and (show_log or show_history))
        self.call_after_refresh(self._fit_toasts)


def _style(state: State) -> str:
    if state is State.SUCCESS:
        return "bold green"
    if state is State.CANCELED:
        return "bold red"
    return ""
