"""progress-tui: follow and drive the shared calculation from a terminal."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import ClassVar, Literal

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Button, Footer, Header

from progress_client.client import (
    DEFAULT_URL,
    ActionAccepted,
    ClientEvent,
    ClientsChanged,
    Closed,
    Connected,
    Connecting,
    ConnectionLost,
    ConnectionStatus,
    NotConnected,
    ProgressClient,
    ServerError,
    StateReceived,
    Waiting,
)
from progress_client.display import printable
from progress_client.reconnect import ReconnectPolicy
from progress_protocol.states import State

from .messages import ClientEventReceived
from .run import RunView
from .widgets import CalculationView, ConnectionStatusBar, EventLog, StateBanner, StepList
from .widgets.connection_bar import ConnectionInfo

__all__ = ["ProgressApp"]

logger = logging.getLogger(__name__)

#: How long an action may wait for its answer before the controls come back.
PENDING_TIMEOUT = 5.0


class ProgressApp(App[None]):
    """The terminal client: one connection, the state on screen, keys to drive it.

    Args:
        url: The server's WebSocket URL.
        policy: The reconnect backoff.
        clock: Wall-clock time (progress, elapsed, log times); tests freeze it.
        now: The event loop's time (reconnect countdown); tests freeze it.
        animate: False freezes the spinners (for stable screenshots).
        connect: False starts no connection; tests feed events to :meth:`apply`.
        log_path: Where unexpected errors are written, named in error messages.
        pending_timeout: How long an action waits for its answer.
        token: The server's token, if it has one.
        cafile: Certificate authorities to trust for a wss:// URL.
    """

    CSS_PATH = "app.tcss"
    TITLE = "progress"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "reconnect", "Reconnect"),
        Binding("q", "quit", "Quit"),
    ]

    run_view: reactive[RunView | None] = reactive(None, init=False)
    connection: reactive[ConnectionInfo] = reactive(
        ConnectionInfo(ConnectionStatus.DISCONNECTED, DEFAULT_URL), init=False
    )
    clients: reactive[int | None] = reactive(None, init=False)
    pending: reactive[str | None] = reactive(None, init=False)

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        policy: ReconnectPolicy | None = None,
        clock: Callable[[], float] = time.time,
        now: Callable[[], float] | None = None,
        animate: bool = True,
        connect: bool = True,
        log_path: str | None = None,
        pending_timeout: float = PENDING_TIMEOUT,
        token: str | None = None,
        cafile: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.client = ProgressClient(url, policy=policy, token=token, cafile=cafile, name=name)
        self.clock = clock
        self.now = now if now is not None else (lambda: asyncio.get_running_loop().time())
        self.spinning = animate
        self.autoconnect = connect
        self.log_path = log_path
        self.pending_timeout = pending_timeout
        self.sub_title = url
        self.set_reactive(ProgressApp.connection, ConnectionInfo(ConnectionStatus.CONNECTING, url))
        self._pending_request: str | None = None
        self._pending_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header(icon="◔")
        with Horizontal(id="body"):
            with Vertical(id="calculation"):
                yield StateBanner().data_bind(run=ProgressApp.run_view)
                yield CalculationView(clock=self.clock, animate=self.spinning).data_bind(
                    run=ProgressApp.run_view
                )
                yield StepList().data_bind(run=ProgressApp.run_view)
                with Horizontal(id="buttons"):
                    yield Button("Start", id="start", variant="success")
                    yield Button("Cancel", id="cancel", variant="error")
            yield EventLog(clock=self.clock)
        yield ConnectionStatusBar(now=self.now, rtt=lambda: self.client.rtt).data_bind(
            info=ProgressApp.connection, clients=ProgressApp.clients
        )
        yield Footer()

    def on_mount(self) -> None:
        self._sync_controls()
        if self.autoconnect:
            self.run_worker(self._follow_server(), name="connection", exclusive=True)

    async def _follow_server(self) -> None:
        """The network worker: the client's events become messages for the UI."""
        try:
            async with aclosing(self.client.events()) as events:
                async for event in events:
                    self.post_message(ClientEventReceived(event))
        except Exception:
            logger.exception("the connection loop failed")
            self.notify(
                "The connection loop stopped on an unexpected error; see the log file.",
                severity="error",
                timeout=10,
            )

    # What the server says.

    @on(ClientEventReceived)
    def _on_client_event(self, message: ClientEventReceived) -> None:
        if not self.query(EventLog):  # not while the app is shutting down
            return
        try:
            self.apply(message.event)
        except Exception:
            # A bug, or server data the screen cannot take: this connection is given up
            # and retried with the backoff, rather than the app stopped.
            logger.exception("cannot show %r", message.event)
            self.client.abandon(
                "an unexpected error while showing the server's data; see the log file"
            )

    async def on_unmount(self) -> None:
        await self.client.close()

    def apply(self, event: ClientEvent) -> None:
        """Update the screen's state from one client event.

        Every text from the server (its name, ids, error sentences, close reasons) is
        shown as plain text: widgets get ``Text``, notifications ``markup=False``, and
        :func:`printable` replaces any control character.
        """
        log = self.query_one(EventLog)
        url = self.client.url
        match event:
            case Connecting(attempt=attempt):
                self.connection = ConnectionInfo(ConnectionStatus.CONNECTING, url, attempt)
            case Connected(server=server):
                self.connection = ConnectionInfo(ConnectionStatus.CONNECTED, url)
                log.add(f"Connected to {url} ({server})", "green")
            case StateReceived(snapshot=snapshot):
                previous = self.run_view
                self.run_view = RunView.follow(previous, snapshot)
                if previous is None or previous.snapshot != snapshot:
                    calculation = snapshot.calculation_id or ""
                    log.add(f"{snapshot.state} {calculation}".rstrip(), _style(snapshot.state))
                self._settle_pending()
            case ClientsChanged(count=count):
                self.clients = count
            case ActionAccepted(ack=ack):
                if ack.request_id == self._pending_request:
                    self._settle_pending()
            case ServerError(error=error):
                self.notify(
                    printable(error.message),
                    title=f"Server: {printable(error.code)}",
                    severity="error",
                    markup=False,
                )
                log.add(f"Refused: {error.message}", "red")
                if error.request_id == self._pending_request:
                    self._settle_pending()
            case ConnectionLost(reason=reason):
                self.connection = ConnectionInfo(ConnectionStatus.DISCONNECTED, url, error=reason)
                log.add(f"Connection lost: {reason}", "bold red")
                self._settle_pending()
            case Waiting(delay=delay, retry_at=retry_at, attempt=attempt, error=why):
                self.connection = ConnectionInfo(
                    ConnectionStatus.RECONNECTING, url, attempt, retry_at, why
                )
                log.add(f"Reconnecting in {delay:.1f}s (attempt {attempt}): {why}", "yellow")
            case Closed(reason=reason):
                self.connection = ConnectionInfo(
                    ConnectionStatus.DISCONNECTED, url, error=None if reason == "closed" else reason
                )
                if reason != "closed":  # e.g. a refused token: retrying cannot help
                    log.add(f"Gave up: {reason}", "bold red")
                    self.notify(
                        printable(reason), title="Cannot connect", severity="error", markup=False
                    )

    # What the user asks for.

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Start and Cancel show dimmed in the Footer while they cannot be used."""
        if action == "start":
            return True if self.can_start else None
        if action == "cancel":
            return True if self.can_cancel else None
        return True

    @property
    def connected(self) -> bool:
        return self.connection.status is ConnectionStatus.CONNECTED

    @property
    def running(self) -> bool:
        return self.run_view is not None and self.run_view.state.is_running

    @property
    def can_start(self) -> bool:
        return self.connected and self.pending is None and not self.running

    @property
    def can_cancel(self) -> bool:
        return self.connected and self.pending is None and self.running

    async def action_start(self) -> None:
        if self.can_start:
            await self._request("start")

    async def action_cancel(self) -> None:
        if self.can_cancel:
            await self._request("cancel")

    def action_reconnect(self) -> None:
        self.query_one(EventLog).add("Reconnecting now (asked by the user)", "yellow")
        self.client.reconnect_now()

    async def action_quit(self) -> None:
        await self.client.close()
        self.exit()

    @on(Button.Pressed, "#start")
    async def _start_pressed(self) -> None:
        await self.run_action("start")

    @on(Button.Pressed, "#cancel")
    async def _cancel_pressed(self) -> None:
        await self.run_action("cancel")

    async def _request(self, action: Literal["start", "cancel"]) -> None:
        self.pending = action
        try:
            self._pending_request = await self.client.send(action)
        except NotConnected as exc:
            self._settle_pending()
            self.notify(f"Cannot {action}: {exc}.", severity="error", markup=False)
            return
        self._pending_timer = self.set_timer(self.pending_timeout, self._pending_timed_out)

    def _pending_timed_out(self) -> None:
        action = self.pending
        if action is None:
            return
        self._settle_pending()
        message = f"No answer from the server to {action} within {self.pending_timeout:g} s."
        self.notify(message, title="No answer", severity="error", markup=False)
        self.query_one(EventLog).add(message, "red")

    def _settle_pending(self) -> None:
        self.pending = None
        self._pending_request = None
        if self._pending_timer is not None:
            self._pending_timer.stop()
            self._pending_timer = None

    # Derived views.

    def watch_run_view(self) -> None:
        self._sync_controls()

    def watch_connection(self) -> None:
        self._sync_controls()

    def watch_pending(self) -> None:
        self._sync_controls()

    def _sync_controls(self) -> None:
        self.query_one("#start", Button).disabled = not self.can_start
        self.query_one("#cancel", Button).disabled = not self.can_cancel
        self.query_one(StateBanner).stale = not self.connected
        self.query_one(CalculationView).busy = self.pending is not None
        self.refresh_bindings()

    # No traceback ever reaches the screen.

    def _handle_exception(self, error: Exception) -> None:
        logger.error("unexpected error; progress-tui stops", exc_info=error)
        # What App._handle_exception records so that run_test re-raises in tests.
        self._return_code = 1
        if self._exception is None:
            self._exception = error
            self._exception_event.set()
        where = f"; the details are in {self.log_path}" if self.log_path else ""
        self.panic(Text(f"progress-tui stopped on an unexpected error ({error}){where}."))


def _style(state: State) -> str:
    if state is State.SUCCESS:
        return "bold green"
    if state is State.CANCELED:
        return "bold red"
    return ""
