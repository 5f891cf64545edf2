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

from progress_client.wording import duration, moment, name_of
from progress_protocol.states import Attribution, Run, State

from ..wrapping import wrap

__all__ = ["COLUMNS", "COMPACT_COLUMNS", "NARROW_COLUMNS", "STACKED_COLUMNS", "HistoryTable"]

#: Where there is room: each fact in its column, on one line.
COLUMNS = ("Started", "Took", "Outcome", "Started by", "Canceled by")
#: Narrower: the outcome is "✔" or "✘ IN_PROGRESS" (the step it interrupted), and
#: who started it and who canceled it ("✘ bob@desk") share one column, a line each.
COMPACT_COLUMNS = ("Started", "Took", "Outcome", "By")
#: Narrower still (a 40-cell pane): how long it took goes under when it started.
NARROW_COLUMNS = ("Started", "Outcome", "By")
#: The narrowest (a side panel of 30 cells): who goes under the outcome.
STACKED_COLUMNS = ("Started", "Outcome, by")

#: The "By" column is not made narrower than this (a "user@host" fits); below it, the
#: table goes from the compact columns to the narrow ones.
MIN_BY_WIDTH = 12
#: How often the table checks that its columns still fit its width, in seconds.
FIT_EVERY = 0.25


@dataclass(frozen=True, slots=True)
class Layout:
    """The columns the table shows, and the width its "By" names wrap at (0: none)."""

    columns: tuple[str, ...]
    by_width: int = 0


class HistoryTable(DataTable[Text]):
    """The history the server sent last, updated live, in as many columns as fit.

    Each cell is whole: a cell that does not fit its column's width breaks between
    words (a name after its ``@``), on more lines of the row; no column goes out of
    sight. Focused (Tab, or a click), the arrows move through the runs.

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
        if width > 0 and self.display and self.layout_for(width) != self.layout_shown:
            self._fill()

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
        layout = self.layout_for(self._width())
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
        """The widest layout whose cells all fit ``width`` cells (inside the border);
        before the table has a width, the widest."""
        full = Layout(COLUMNS)
        if width <= 0 or sum(self._column_widths(full)) <= width:
            return full
        for columns in (COMPACT_COLUMNS, NARROW_COLUMNS, STACKED_COLUMNS):
            *others, _ = self._column_widths(Layout(columns))
            by_width = width - sum(others) - 2 * self.cell_padding
            if by_width >= MIN_BY_WIDTH or columns == STACKED_COLUMNS:
                return Layout(columns, max(by_width, 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _column_widths(self, layout: Layout) -> list[int]:
        """The cells each column takes, as wide as its widest line (names unwrapped)."""
        widths = [cell_len(label) for label in layout.columns]
        for run in self.runs:
            for index, cell in enumerate(self.cells(run, layout)):
                lines = cell.plain.split("\n")
                widths[index] = max(widths[index], *(cell_len(line) for line in lines))
        return [width + 2 * self.cell_padding for width in widths]

    def cells(self, run: Run, layout: Layout) -> tuple[Text, ...]:
        """One row in ``layout``: every text from the server shown plainly, never as
        markup."""
        took = Text(duration(run.seconds), justify="right")
        if layout.columns == COLUMNS:
            if run.outcome is State.SUCCESS:
                outcome = Text("✔ SUCCESS", style="green")
            else:
                during = f" ({run.canceled_during})" if run.canceled_during else ""
                outcome = Text(f"✘ CANCELED{during}", style="red")
            started_by = self.who(run.started_by) if run.started_by else "—"
            canceled_by = self.who(run.canceled_by) if run.canceled_by else ""
            return (
                Text(self.moment(run.started_at)),
                took,
                outcome,
                Text(started_by),
                Text(canceled_by),
            )
        if run.outcome is State.SUCCESS:
            outcome = Text("✔", style="green")
        else:
            during = f" {run.canceled_during}" if run.canceled_during else ""
            outcome = Text(f"✘{during}", style="red")
        by = self.names(run, layout.by_width)
        started = Text(self.moment(run.started_at, compact=True))
        if layout.columns == COMPACT_COLUMNS:
            return (started, took, outcome, by)
        started_took = Text.assemble(started, "\n", took.plain)
        if layout.columns == NARROW_COLUMNS:
            return (started_took, outcome, by)
        return (started_took, Text.assemble(outcome, "\n", by))

    def names(self, run: Run, width: int) -> Text:
        """Who started the run, and under it "✘ " and who canceled it; each broken to
        ``width`` cells (0: not broken), a canceler's name indented under its own."""
        started_by = self.who(run.started_by) if run.started_by else "—"
        lines = wrap(Text(started_by), width) if width else [Text(started_by)]
        if run.canceled_by is not None:
            name = Text(self.who(run.canceled_by))
            parts = wrap(name, max(width - 2, 1)) if width else [name]
            lines += [Text.assemble("✘ " if n == 0 else "  ", part) for n, part in enumerate(parts)]
        return Text("\n").join(lines)

    def who(self, by: Attribution) -> str:
        """A name, plainly; "you" for this client (a narrow column stays narrow)."""
        return name_of(by, self.mine, brief=True)

    def moment(self, when: float, *, compact: bool = False) -> str:
        """The time of day, with the date when it is not today (without the year, in
        the compact columns)."""
        return moment(when, now=self.clock(), compact=compact)
