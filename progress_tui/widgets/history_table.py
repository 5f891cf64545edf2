"""The last finished calculations, newest first: started, duration, outcome, by whom."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual.events import Resize
from textual.reactive import reactive
from textual.widgets import DataTable

from progress_client.wording import clock_time, cut, duration, moment, name_of
from progress_protocol.states import Attribution, Run, State

from ..wrapping import wrap

__all__ = ["COLUMNS", "COMPACT_COLUMNS", "NARROW_COLUMNS", "STACKED_COLUMNS", "HistoryTable"]

#: Where there is room: each fact in its column, on one line; a name too long for its
#: column is cut with an ellipsis (down to its label's width) before the table goes to
#: fewer columns.
COLUMNS = ("Started", "Took", "Outcome", "Started by", "Canceled by")
#: Narrower: the outcome in words, "✔ done" or "✘ canceled in IN_PROGRESS" and under
#: it "by bob@desk", beside who started it.
COMPACT_COLUMNS = ("Started", "Took", "Outcome", "Started by")
#: Narrower still (a 60-cell pane): how long it took goes under when it started.
NARROW_COLUMNS = ("Started", "Outcome", "Started by")
#: The narrowest (a 40-cell pane): "started by alice" goes under the outcome.
STACKED_COLUMNS = ("Started", "Outcome")

#: The "Started by" column is not made narrower than this (a "user@host" fits); below
#: it, the table goes to the next, narrower, columns.
MIN_BY_WIDTH = 12
#: How often the table checks that its columns still fit its width, in seconds.
FIT_EVERY = 0.25


@dataclass(frozen=True, slots=True)
class Layout:
    """The columns the table shows, and how wide its texts may be.

    Attributes:
        columns: The columns' labels.
        by_width: The width the last column's names (the narrow columns) are broken at;
            0: not broken.
        outcome_width: The width the outcome's words are broken at (the narrow columns);
            0: not broken.
        names: The widths the two name columns' names are cut at, with an ellipsis (the
            widest columns); 0: not cut.
    """

    columns: tuple[str, ...]
    by_width: int = 0
    outcome_width: int = 0
    names: tuple[int, int] = (0, 0)


class HistoryTable(DataTable[Text]):
    """The history the server sent last, updated live, in as many columns as fit.

    No column goes out of sight, and each keeps a space at least from the next. Where
    every fact has its column, a name too long for the width is cut with an ellipsis;
    in fewer columns, a text breaks between words (a name after its ``@``), on more
    lines of the row. Focused (Tab, or a click), the arrows move through the runs.

    Args:
        clock: Wall-clock time: a start on another day shows its date; tests freeze it.
    """

    DEFAULT_CSS = """
    HistoryTable {
        height: auto;
        max-height: 50%;
        min-height: 5;
        border: round $foreground 45%;
        border-title-color: $text-muted;
        border-subtitle-color: $text-muted;
        scrollbar-size: 1 1;
        /* The columns are chosen for the width inside the scrollbar's column. */
        scrollbar-gutter: stable;
    }
    HistoryTable:focus {
        border: round $primary;
    }
    /* In the terminal's colours: the header on its background, not on blue. */
    HistoryTable:ansi > .datatable--header {
        background: ansi_default;
        color: ansi_default;
    }
    """

    runs: reactive[tuple[Run, ...]] = reactive(())
    #: This client's ids (one per connection it had): its own actions read "you".
    mine: reactive[tuple[str, ...]] = reactive(())

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_cursor=False)
        self.clock = clock
        self.border_title = "History"
        self.layout_shown: Layout | None = None
        self._last_width = 0
        #: The width and the day the rows were last laid out for: the same again
        #: (the check four times a second) needs no new layout.
        self._laid_out_for: tuple[int, str] | None = None

    def on_mount(self) -> None:
        self._fill()
        # Resize and Show are not enough: Textual 6.2's layout pass for a scroll (its
        # Screen._refresh_layout) sends no Show to a widget it shows, and no Resize
        # if the size is the one it had, so a history shown again kept the widest columns
        # in a 40-column pane, now and then. Comparing widths costs nothing.
        self.set_interval(FIT_EVERY, self._fit)

    def watch_runs(self) -> None:
        self._fill()

    def watch_mine(self) -> None:
        self._fill()

    def on_resize(self, event: Resize) -> None:
        self._fit()

    def on_show(self) -> None:
        # Shown again at the size it had, it may get no Resize: its width is read now.
        self._fit()

    def _fit(self) -> None:
        """The columns for the width as it is now; none while hidden (a width of 0 would
        pick the widest, and a Resize handled late would leave them)."""
        width = self.scrollable_content_region.width
        if width <= 0 or not self.display:
            return
        key = (width, self._today())
        if key == self._laid_out_for:
            return
        if self.layout_for(width) != self.layout_shown:
            self._fill()
        else:
            self._laid_out_for = key

    def _today(self) -> str:
        """Past midnight the start times gain their date: another layout may fit."""
        return clock_time(self.clock(), "%Y-%m-%d")

    def on_focus(self) -> None:
        self.show_cursor = True

    def on_blur(self) -> None:
        self.show_cursor = False

    def _width(self) -> int:
        """The width inside the border; while hidden (0), the last it had: runs that come
        while hidden are laid out for the width the table will be shown at again."""
        width = self.scrollable_content_region.width
        if width > 0:
            self._last_width = width
        return width or self._last_width

    def _fill(self) -> None:
        if not self.is_mounted:
            return
        width = self._width()
        layout = self.layout_for(width)
        self._laid_out_for = (width, self._today())
        rows = [self.cells(run, layout) for run in self.runs]
        # Each column as wide as its widest line, set here rather than measured by the
        # table as rows come (which, rows of several lines among them, could leave a
        # column as narrow as its label).
        self.clear(columns=True)
        for index, label in enumerate(layout.columns):
            lines = [label] + [line for row in rows for line in row[index].plain.split("\n")]
            self.add_column(label, width=max(cell_len(line) for line in lines))
        self.layout_shown = layout
        for run, cells in zip(self.runs, rows, strict=True):
            height = max(len(cell.plain.split("\n")) for cell in cells)
            self.add_row(*cells, key=run.calculation_id, height=height)
        self.border_subtitle = "" if self.runs else "no finished calculation yet"

    def layout_for(self, width: int) -> Layout:
        """The widest layout whose cells all fit ``width`` cells (inside the border),
        each column one space at least from the next; before the table has a width, the
        widest.

        The widest columns come first, their names cut with an ellipsis if need be (a
        long name does not cost the columns); then the outcome in words beside who
        started it, then those two alone, then the outcome over who started it.
        """
        padding = 2 * self.cell_padding
        *fixed, started_by, canceled_by = self._widths(Layout(COLUMNS))
        room = width - sum(fixed) - len(COLUMNS) * padding
        if width <= 0 or started_by + canceled_by <= room:
            return Layout(COLUMNS)
        labels = [cell_len(label) for label in COLUMNS[-2:]]
        names = _cut_to(room, [started_by, canceled_by], labels)
        if names is not None:
            return Layout(COLUMNS, names=names)
        heads = max(
            [cell_len("Outcome")] + [cell_len(self.outcome(run)[0].plain) for run in self.runs]
        )
        started, took, *_ = self._widths(Layout(COMPACT_COLUMNS))
        by_width = width - (started + took + heads) - len(COMPACT_COLUMNS) * padding
        if by_width >= MIN_BY_WIDTH:
            return Layout(COMPACT_COLUMNS, by_width, heads)
        first = max(started, took)
        by_width = width - (first + heads) - len(NARROW_COLUMNS) * padding
        if by_width >= MIN_BY_WIDTH:
            return Layout(NARROW_COLUMNS, by_width, heads)
        rest = max(width - first - len(STACKED_COLUMNS) * padding, 1)
        return Layout(STACKED_COLUMNS, rest, rest)

    def _widths(self, layout: Layout) -> list[int]:
        """The cells each column's text takes in ``layout``, as wide as its widest line
        (its label's, at least), without the padding."""
        widths = [cell_len(label) for label in layout.columns]
        for run in self.runs:
            for index, cell in enumerate(self.cells(run, layout)):
                lines = cell.plain.split("\n")
                widths[index] = max(widths[index], *(cell_len(line) for line in lines))
        return widths

    def cells(self, run: Run, layout: Layout) -> tuple[Text, ...]:
        """One row in ``layout``: every text from the server shown plainly, never as
        markup."""
        took = Text(duration(run.seconds), justify="right")
        starter = self.who(run.started_by) if run.started_by else "—"
        if layout.columns == COLUMNS:
            if run.outcome is State.SUCCESS:
                outcome = Text("✔ SUCCESS", style="green")
            else:
                during = f" ({run.canceled_during})" if run.canceled_during else ""
                outcome = Text(f"✘ CANCELED{during}", style="red")
            canceler = self.who(run.canceled_by) if run.canceled_by else ""
            started_by, canceled_by = layout.names
            return (
                Text(self.moment(run.started_at)),
                took,
                outcome,
                Text(cut(starter, started_by) if started_by else starter),
                Text(cut(canceler, canceled_by) if canceled_by else canceler),
            )
        head, by = self.outcome(run)
        words = _outcome_words(head, by, layout.outcome_width)
        started = Text(self.moment(run.started_at, compact=True))
        if layout.columns == COMPACT_COLUMNS:
            return (started, took, words, _broken(Text(starter), layout.by_width))
        started_took = Text.assemble(started, "\n", took.plain)
        if layout.columns == NARROW_COLUMNS:
            return (started_took, words, _broken(Text(starter), layout.by_width))
        if run.started_by is None:
            return (started_took, words)
        who = _broken(Text(f"started by {starter}"), layout.by_width)
        return (started_took, Text.assemble(words, "\n", who))

    def outcome(self, run: Run) -> tuple[Text, str | None]:
        """How a run ended, in words: "✔ done", "✘ canceled in IN_PROGRESS" (the step it
        interrupted; one line of a 40-column pane); and who canceled it (None: nobody,
        or not known)."""
        if run.outcome is State.SUCCESS:
            return Text("✔ done", style="green"), None
        during = f" in {run.canceled_during}" if run.canceled_during else ""
        by = self.who(run.canceled_by) if run.canceled_by else None
        return Text(f"✘ canceled{during}", style="red"), by

    def who(self, by: Attribution) -> str:
        """A name, plainly; "you" for this client (a narrow column stays narrow)."""
        return name_of(by, self.mine, brief=True)

    def moment(self, when: float, *, compact: bool = False) -> str:
        """The time of day, with the date when it is not today (without the year, in
        the compact columns)."""
        return moment(when, now=self.clock(), compact=compact)


def _broken(text: Text, width: int) -> Text:
    """``text`` broken into lines of ``width`` cells at most, between words (a name
    after its ``@``); 0: on one line."""
    return Text("\n").join(wrap(text, width)) if width else text


def _outcome_words(head: Text, by: str | None, width: int) -> Text:
    """ "✘ canceled in IN_PROGRESS by bob@desk" in lines of ``width`` cells (0: one
    line): where it is longer, the outcome, then "by" and the name, a long name broken
    and indented under its first line."""
    whole = Text.assemble(head, f" by {by}" if by else "")
    if not width or whole.cell_len <= width or by is None:
        return _broken(whole, width)
    parts = wrap(Text(by), max(width - 3, 1))
    lines = [*wrap(head, width), *(Text.assemble("   ", part) for part in parts[1:])]
    lines.insert(len(lines) - len(parts) + 1, Text.assemble("by ", parts[0]))
    return Text("\n").join(lines)


def _cut_to(room: int, widths: list[int], least: list[int]) -> tuple[int, int] | None:
    """The widths of the two name columns that fit ``room`` cells together, the wider
    one narrowed first, none below its ``least``; None if they cannot fit."""
    if sum(least) > room:
        return None
    cut = list(widths)
    while sum(cut) > room:
        widest = max(
            (index for index in range(len(cut)) if cut[index] > least[index]),
            key=lambda index: cut[index],
        )
        cut[widest] -= 1
    return cut[0], cut[1]
