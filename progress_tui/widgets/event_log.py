"""A timestamped list of state changes and connection events."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.widgets import RichLog

from progress_client.display import printable

__all__ = ["EventLog"]


class EventLog(RichLog):
    """Newest at the bottom; keeps the last ``max_lines`` entries.

    Args:
        clock: Wall-clock time for the timestamps; tests freeze it.
    """

    DEFAULT_CSS = """
    EventLog {
        border: round $primary-muted;
        border-title-color: $text-muted;
        padding: 0 1;
        scrollbar-size-vertical: 1;
        overflow-y: auto;
    }
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, max_lines: int = 500, id: str | None = None
    ) -> None:
        super().__init__(max_lines=max_lines, min_width=20, wrap=True, markup=False, id=id)
        self.clock = clock
        self.border_title = "Events"

    def add(self, message: str, style: str = "") -> None:
        """One entry, as plain text: server words in ``message`` are never markup."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        self.write(Text.assemble((f"{stamp} ", "dim"), (printable(message), style)))
