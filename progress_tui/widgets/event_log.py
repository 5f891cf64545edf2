"""A timestamped list of state changes and connection events, in time order."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from rich.text import Text
from textual.events import Resize, Show
from textual.widgets import RichLog

from progress_client.wording import clock_time, moment, printable

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

    The times go forward: a fact stamped with the server's time (a state's
    ``changed_at``) that is older than the last line, because it was heard late (on
    connecting, after an outage), is written at the time it was heard and says since
    when: "16:28:48 IN_PROGRESS 3b6188a98e7a (since 16:28:39)". The last line is always
    the latest news.

    The entries are kept as text and wrapped again at each change of width, so that a
    log that was narrowed and widened again shows every line whole, with no horizontal
    scrollbar, scrolled to its end. They break at spaces, a URL after a ``/``: never
    inside a word (see :func:`~progress_tui.wrapping.wrap`), within the width left by
    the scrollbar's reserved column. Shown again, it shows its newest lines, those
    that came while it was hidden included.

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
        #: The width the entries are drawn at (0: none yet), and whether some are not.
        self._drawn_width = 0
        self._behind = False
        #: The time of the newest line, as written (None: no line yet).
        self._newest: float | None = None
        #: The last entry, when it may be said again: its words, style, how many times
        #: it was said, and the lines it takes on screen.
        self._repeated: tuple[str, str] | None = None
        self._times = 0
        self._tail_lines = 0

    def add(
        self, message: str, style: str = "", *, at: float | None = None, repeats: bool = False
    ) -> None:
        """One entry, as plain text: server words in ``message`` are never markup.

        Args:
            message: What happened.
            style: The message's Rich style.
            at: When it happened (unix time): a state's ``changed_at``, the server's
                time, which every client shows alike. By default, now on this clock. A
                time before the newest line's is written as now, "(since ...)" it.
            repeats: The same words said again right after (a key held down) count on
                the last line, "Resync requested (30 times)", rather than add one.
        """
        now = self.clock()
        if repeats and self._repeated == (message, style) and self.entries:
            self._times += 1
            self._replace_last(self._entry(now, f"{message} ({self._times} times)", style))
            return
        when = now if at is None else at
        if self._later_than(when):  # heard late
            message = f"{message} (since {moment(when, now=now)})"
            when = now
        self._repeated, self._times = ((message, style), 1) if repeats else (None, 0)
        entry = self._entry(when, message, style)
        self.entries.append(entry)
        if self._drawn_width:
            self._tail_lines = self._draw(entry, self._drawn_width)
        else:
            self._behind = True

    def _later_than(self, when: float) -> bool:
        """Whether the newest line shows a later second than ``when``."""
        newest = self._newest
        if newest is None or not (math.isfinite(when) and math.isfinite(newest)):
            return False
        return math.floor(when) < math.floor(newest)

    def _entry(self, when: float, message: str, style: str) -> Text:
        if not self._later_than(when):
            self._newest = when
        return Text.assemble((f"{clock_time(when)} ", "dim"), (printable(message), style))

    def _replace_last(self, entry: Text) -> None:
        """The last entry, said again: its lines on screen are replaced in place."""
        self.entries[-1] = entry
        if not self._drawn_width or self._behind:
            return
        if 0 < self._tail_lines <= len(self.lines):
            del self.lines[-self._tail_lines :]
        # RichLog keeps its rendered lines by their number: the cache must forget those
        # just replaced (its notify_style_update clears it).
        self.notify_style_update()
        self._tail_lines = self._draw(entry, self._drawn_width)
        self.refresh()  # as many lines as before: no new size to repaint it

    def _draw(self, entry: Text, width: int, *, scroll_end: bool | None = None) -> int:
        """Write ``entry`` at the end, wrapped to ``width``; return its lines."""
        lines = hanging(entry, width)
        # At that width also while hidden (RichLog would take its width then, 0).
        self.write(Text("\n").join(lines), width=width, scroll_end=scroll_end)
        return len(lines)

    def text(self) -> str:
        """Every entry, one per line, as plain text."""
        return "\n".join(entry.plain for entry in self.entries)

    def _width(self) -> int:
        return self.scrollable_content_region.width

    def on_resize(self, event: Resize) -> None:
        # Shorter (the history opened beside it) or narrower: the newest lines stay in
        # view, as a terminal keeps its last lines.
        self._catch_up()
        self._to_the_end()

    def on_show(self, event: Show) -> None:
        # Shown again at the size it had, it may get no Resize: it catches up here, and
        # shows its newest lines.
        self._catch_up()
        self._to_the_end()

    def _to_the_end(self) -> None:
        """Scroll to the newest lines once laid out. (Forced: a log just shown has no
        scrollbar yet, until the layout that follows, and Textual would not scroll it.)"""
        self.scroll_end(animate=False, immediate=False, x_axis=False, force=True)

    def _catch_up(self) -> None:
        """Draw every entry again for the width it has now, if it changed or some came
        while it had none (hidden); the newest lines in view."""
        width = self._width()
        if width <= 0 or (width == self._drawn_width and not self._behind):
            return
        self._drawn_width, self._behind = width, False
        self.clear()
        for entry in self.entries:
            self._tail_lines = self._draw(entry, width, scroll_end=False)
        self._to_the_end()
