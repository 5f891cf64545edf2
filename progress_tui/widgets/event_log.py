"""A timestamped list of state changes and connection events."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from rich.text import Text
from textual.events import Resize
from textual.widgets import RichLog

from progress_client.display import printable

__all__ = ["EventLog"]


class EventLog(RichLog):
    """Newest at the bottom; keeps the last ``max_lines`` entries.

    The entries are kept as text and wrapped again at each change of width, so that a
    log that was narrowed and widened again shows every line whole, with no horizontal
    scrollbar, scrolled to its end.

    Args:
        clock: Wall-clock time for the timestamps; tests freeze it.
    """

    DEFAULT_CSS = """
    EventLog {
        border: round $primary-muted;
        border-title-color: $text-muted;
        padding: 0 1;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
        overflow-x: hidden;
        overflow-y: auto;
    }
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, max_lines: int = 500, id: str | None = None
    ) -> None:
        super().__init__(max_lines=max_lines, min_width=1, wrap=True, markup=False, id=id)
        self.clock = clock
        self.entries: deque[Text] = deque(maxlen=max_lines)
        self.border_title = "Events"
        self._drawn_width = 0

    def add(self, message: str, style: str = "") -> None:
        """One entry, as plain text: server words in ``message`` are never markup."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        entry = Text.assemble((f"{stamp} ", "dim"), (printable(message), style))
        self.entries.append(entry)
        if self._drawn_width and self._drawn_width == self._width():
            self.write(entry)
        # Otherwise (hidden, or not laid out yet) it is drawn at the next resize.

    def text(self) -> str:
        """Every entry, one per line, as plain text."""
        return "\n".join(entry.plain for entry in self.entries)

    def _width(self) -> int:
        return self.scrollable_content_region.width

    def on_resize(self, event: Resize) -> None:
        width = self._width()
        if width > 0 and width != self._drawn_width:
            self._drawn_width = width
            self.clear()
            for entry in self.entries:
                self.write(entry, scroll_end=False)
            self.scroll_end(animate=False, immediate=False, x_axis=False)
