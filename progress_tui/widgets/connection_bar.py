"""The connection status bar, docked above the Footer."""

from __future__ import annotations

from collections.abc import Callable

from textual.content import Content
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from progress_client.events import ConnectionStatus
from progress_client.wording import cells, countdown, printable, watching, you_are
from progress_protocol.messages import Presence

from ..status import STORE_DOWN, ConnectionInfo, Identity

__all__ = ["ConnectionStatusBar"]


class ConnectionStatusBar(Widget):
    """ "● Connected to URL - alice · operator - 3 watching: alice, bob (viewer), ci-bot -
    rtt X ms", "↻ Reconnecting in X.Xs (attempt N) - why", "✘ Stopped: why - press r to
    try again".

    The longest wording that fits the width on one line is shown (the shortest fit 40
    cells; the reasons are in the event log); on a narrower terminal it wraps between
    words, never inside one.

    Args:
        now: The event loop's time, for the countdown; tests freeze it.
        rtt: The last ping's round-trip time in seconds, or None.
    """

    # Quiet while all is well (connected, or connecting at first), like the keys below
    # it; loud in trouble: reconnecting in the warning's colour, stopped in the error's.
    # In the terminal's colours (16, or none) trouble is in reverse video.
    DEFAULT_CSS = """
    ConnectionStatusBar {
        height: auto;
        padding: 0 1;
        background: $footer-background;
        color: $footer-description-foreground;
    }
    ConnectionStatusBar.-reconnecting {
        background: $warning;
        color: auto;
        text-style: bold;
    }
    ConnectionStatusBar.-disconnected {
        background: $error;
        color: auto;
        text-style: bold;
    }
    ConnectionStatusBar:ansi {
        background: ansi_default;
        color: ansi_default;
    }
    ConnectionStatusBar:ansi.-reconnecting {
        color: $text-warning;
        text-style: bold reverse;
    }
    ConnectionStatusBar:ansi.-disconnected {
        color: $text-error;
        text-style: bold reverse;
    }
    ConnectionStatusBar.-store-down {
        background: $warning;
        color: auto;
        text-style: bold;
    }
    ConnectionStatusBar:ansi.-store-down {
        color: $text-warning;
        text-style: bold reverse;
    }
    """

    info: reactive[ConnectionInfo | None] = reactive(None)
    clients: reactive[int | None] = reactive(None)
    #: Who the server takes this app for; who is connected.
    identity: reactive[Identity | None] = reactive(None)
    presence: reactive[Presence | None] = reactive(None)
    #: False while the server cannot reach its store: that is what the bar says.
    store_reachable: reactive[bool] = reactive(True)

    def __init__(
        self,
        *,
        now: Callable[[], float],
        rtt: Callable[[], float | None],
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.now = now
        self.rtt = rtt

    def on_mount(self) -> None:
        # The countdown and the rtt move on their own; 4 times a second is plenty.
        self.set_interval(0.25, self.refresh)

    def watch_info(self, info: ConnectionInfo | None) -> None:
        for status in ConnectionStatus:
            self.set_class(info is not None and info.status is status, f"-{status.value}")

    def watch_store_reachable(self, reachable: bool) -> None:
        self.set_class(not reachable, "-store-down")

    def render(self) -> Content:
        # Plain text, never markup: the error can quote the server (a refusal, a close
        # reason).
        return Content(self.describe(self.size.width or None))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(Content(self.describe(width)).wrap(width)) if width > 0 else 1

    def describe(self, width: int | None = None) -> str:
        """The longest wording that fits in ``width`` cells (None: the longest)."""
        wordings = [printable(" - ".join(parts)) for parts in self.wordings(width)]
        if width is not None:
            for wording in wordings:
                if Content(wording).cell_length <= width:
                    return wording
        return wordings[-1] if width is not None else wordings[0]

    def wordings(self, width: int | None = None) -> list[list[str]]:
        """What the bar can say now, from the longest to the shortest, in parts; the
        list of who is watching is cut to what is left of ``width``."""
        info = self.info
        if info is None:
            return [["✘ Disconnected"]]
        match info.status:
            case ConnectionStatus.CONNECTED:
                you = self.identity
                known = you is not None and bool(you.name or you.role)
                me = [you_are(you.name, you.role)] if you and known else []
                # The name cut shorter, for the narrowest panes.
                brief = [you_are(you.name, you.role, limit=10)] if you and known else []

                def who(head: list[str]) -> list[str]:
                    """Who is watching: all of them with no ``head``, else cut to what
                    ``width`` leaves after it."""
                    if self.presence is not None:
                        used = cells(" - ".join([*head, ""]))
                        room = None if width is None or not head else max(1, width - used)
                        return [watching(self.presence, room)]
                    if self.clients is not None:
                        return [f"{self.clients} client{'s' if self.clients != 1 else ''}"]
                    return []

                if not self.store_reachable:
                    return [
                        ["● Connected", *me, STORE_DOWN],
                        ["● Connected", STORE_DOWN],
                        ["▲ Store unreachable: the run waits"],
                        ["▲ Store unreachable"],
                    ]
                rtt = self.rtt()
                timing = "rtt …" if rtt is None else f"rtt {rtt * 1000:.1f} ms"
                full = [f"● Connected to {info.url}", *me]
                short = ["● Connected", *me]
                # The last: "● alice · viewer - 3 watching", at 40 columns.
                least = [" ".join(["●", *me])] if me else ["● Connected"]
                tiny = [" ".join(["●", *brief])] if brief else ["●"]
                everyone = who([])  # all the names: they go before the URL and the rtt
                return [
                    [*full, *everyone, timing],
                    [*short, *everyone, timing],
                    [*short, *everyone],
                    [*short, *who(short)],
                    [*least, *who(least)],
                    [*tiny, *who(tiny)],
                ]
            case ConnectionStatus.CONNECTING:
                attempt = f" (attempt {info.attempt})" if info.attempt > 1 else ""
                return [[f"◌ Connecting…{attempt} {info.url}"], [f"◌ Connecting…{attempt}"]]
            case ConnectionStatus.RECONNECTING:
                remaining = max(0.0, (info.retry_at or 0.0) - self.now())
                line = f"↻ Reconnecting in {countdown(remaining)} (attempt {info.attempt})"
                why = [info.error] if info.error else []
                return [[line, *why], [line]]
        if info.stopped and info.error:
            reason = info.error.removeprefix("refused: ")
            return [
                [f"✘ Stopped: {info.error}", "press r to try again"],
                # The reason before "press r" (the keys show r), then fewer words.
                [f"✘ Stopped: {info.error}"],
                [f"✘ {reason[:1].upper()}{reason[1:]}"],
                ["✘ Stopped", "press r to try again"],
            ]
        if info.stopped:
            return [["✘ Stopped", "press r to try again"]]
        if info.error:
            return [["✘ Disconnected", info.error], ["✘ Disconnected"]]
        return [["✘ Disconnected"]]
