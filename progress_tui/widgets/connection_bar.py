"""The connection status bar, docked above the Footer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from progress_client.client import ConnectionStatus
from progress_client.display import printable

__all__ = ["ConnectionInfo", "ConnectionStatusBar"]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the bar shows about the connection.

    Attributes:
        retry_at: When the next attempt starts, in the event loop's time.
    """

    status: ConnectionStatus
    url: str
    attempt: int = 0
    retry_at: float | None = None
    error: str | None = None


class ConnectionStatusBar(Widget):
    """ "Connected to URL - N clients - rtt X ms", "Reconnecting in X.Xs (attempt N) - why".

    Args:
        now: The event loop's time, for the countdown; tests freeze it.
        rtt: The last ping's round-trip time in seconds, or None.
    """

    DEFAULT_CSS = """
    ConnectionStatusBar {
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    ConnectionStatusBar.-connected { background: $success-muted; color: $text; }
    ConnectionStatusBar.-connecting { background: $warning-muted; color: $text; }
    ConnectionStatusBar.-reconnecting { background: $error-muted; color: $text; }
    ConnectionStatusBar.-disconnected { background: $error; color: $text; }
    """

    info: reactive[ConnectionInfo | None] = reactive(None)
    clients: reactive[int | None] = reactive(None)

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

    def render(self) -> Text:
        # Plain text: the error can quote the server (a close reason).
        return Text(printable(self.describe()))

    def describe(self) -> str:
        info = self.info
        if info is None:
            return "Disconnected"
        match info.status:
            case ConnectionStatus.CONNECTED:
                parts = [f"● Connected to {info.url}"]
                if self.clients is not None:
                    parts.append(f"{self.clients} client{'s' if self.clients != 1 else ''}")
                rtt = self.rtt()
                parts.append("rtt …" if rtt is None else f"rtt {rtt * 1000:.1f} ms")
                return " - ".join(parts)
            case ConnectionStatus.CONNECTING:
                attempt = f" (attempt {info.attempt})" if info.attempt > 1 else ""
                return f"◌ Connecting...{attempt} {info.url}"
            case ConnectionStatus.RECONNECTING:
                remaining = max(0.0, (info.retry_at or 0.0) - self.now())
                text = f"↻ Reconnecting in {remaining:.1f}s (attempt {info.attempt})"
                return f"{text} - {info.error}" if info.error else text
        return f"✘ Disconnected - {info.error}" if info.error else "✘ Disconnected"
