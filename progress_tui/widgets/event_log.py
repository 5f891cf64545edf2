"""A timestamped list of state changes and connection events."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from rich.text import Text
from textual.events import Resize
from textual.widgets import RichLog

from progress_client.wording import clock_time, printable

from ..wrapping import wrap

__all__ = ["EventLog", "hanging"]

#: The fewest cells a message keeps beside its time: narrower, no indent.
MIN_HANGING = 12


def hanging(entry: Text, width: int) -> list[Text]:
    """An entry ("time message") in lines of ``width`` cells, with a hanging indent: the
    lines after the first start under the message, the time standing alone in its column
    (where that leaves the message :data:`MIN_HANGING` cells)."""
    indent = entry.plain.find(" ") + 1
    if indent <= 0 or width - indent < MIN_HANGING:
        return wrap(entry, width)
    first, *rest = wrap(entry[indent:], width - indent)
    return [entry[:indent] + first, *(Text(" " * indent) + line for line in rest)]


class EventLog(RichLog):
    """Newest at the bottom; keeps the last ``max_lines`` entries.

    The entries are kept as text and wrapped again at each change of width, so that a
    log that was narrowed and widened again shows every line whole, with no horizontal
    scrollbar, scrolled to its end. They break at spaces, a URL after a ``/``: never
    inside a word (see :func:`~progress_tui.wrapping.wrap`), within the width left by
    the scrollbar's reserved column.

    Args:
        clock: Wall-clock time for the timestamps; tests freeze it.
    """

    DEFAULT_CSS = """
    EventLog {
        border: round $foreground 45%;
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
        # The lines come wrapped (by wrap()): Rich must not fold them again.
        super().__init__(max_lines=max_lines, min_width=1, wrap=False, markup=False, id=id)
        self.clock = clock
        self.entries: deque[Text] = deque(maxlen=max_lines)
        self.border_title = "Events"
        self._drawn_width = 0

    def add(self, message: str, style: str = "", *, at: float | None = None) -> None:
        """One entry, as plain text: server words in ``message`` are never markup.

        Args:
            message: What happened.
            style: The message's Rich style.
            at: When it happened (unix time): a state's ``changed_at``, the server's
                time, which every client shows alike. By default, now on this clock.
        """
        when = self.clock() if at is None else at
        entry = Text.assemble((f"{clock_time(when)} ", "dim"), (printable(message), style))
        self.entries.append(entry)
        if self._drawn_width and self._drawn_width == self._width():
            self._draw(entry, self._drawn_width)
        # Otherwise (hidden, or not laid out yet) it is drawn at the next resize.

    def _draw(self, entry: Text, width: int, *, scroll_end: bool | None = None) -> None:
        self.write(Text("\n").join(hanging(entry, width)), scroll_end=scroll_end)

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
                self._draw(entry, width, scroll_end=False)
            self.scroll_end(animate=False, immediate=False, x_axis=False)
