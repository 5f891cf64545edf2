"""The last finished calculations, newest first: started, duration, outcome, by whom."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable

from progress_client.display import duration, printable
from progress_protocol.states import Attribution, Run, State

__all__ = ["HistoryTable"]

COLUMNS = ("Started", "Took", "Outcome", "Started by", "Canceled by")


class HistoryTable(DataTable[Text]):
    """The history the server sent last, updated live.

    Args:
        clock: Wall-clock time: a start on another day shows its date; tests freeze it.
    """

    DEFAULT_CSS = """
    HistoryTable {
        height: auto;
        max-height: 50%;
        border: round $primary-muted;
        border-title-color: $text-muted;
        border-subtitle-color: $text-muted;
        scrollbar-size: 1 1;
    }
    """

    runs: reactive[tuple[Run, ...]] = reactive(())
    #: This client's id: its own actions read "(you)".
    me: reactive[str | None] = reactive(None)

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_cursor=False)
        self.clock = clock
        self.border_title = "History"

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)
        self._fill()

    def watch_runs(self) -> None:
        self._fill()

    def watch_me(self) -> None:
        self._fill()

    def _fill(self) -> None:
        if not self.columns:  # not mounted yet
            return
        self.clear()
        for run in self.runs:
            self.add_row(*self.cells(run), key=run.calculation_id)
        self.border_subtitle = "" if self.runs else "no finished calculation yet"

    def cells(self, run: Run) -> tuple[Text, ...]:
        """One row: every text from the server shown plainly, never as markup."""
        if run.outcome is State.SUCCESS:
            outcome = Text("✔ SUCCESS", style="green")
        else:
            during = f" ({run.canceled_during})" if run.canceled_during else ""
            outcome = Text(f"✘ CANCELED{during}", style="red")
        started_by = self.who(run.started_by) if run.started_by else "—"
        canceled_by = self.who(run.canceled_by) if run.canceled_by else ""
        return (
            Text(self.moment(run.started_at)),
            Text(duration(run.seconds), justify="right"),
            outcome,
            Text(started_by),
            Text(canceled_by),
        )

    def who(self, by: Attribution) -> str:
        """A name, plainly; "you" for this client (a narrow column stays narrow)."""
        return "you" if self.me is not None and by.client_id == self.me else printable(by.name)

    def moment(self, when: float) -> str:
        """The time of day, with the date when it is not today."""
        here = time.localtime(when)
        if time.strftime("%Y-%m-%d", here) == time.strftime(
            "%Y-%m-%d", time.localtime(self.clock())
        ):
            return time.strftime("%H:%M:%S", here)
        return time.strftime("%Y-%m-%d %H:%M", here)
