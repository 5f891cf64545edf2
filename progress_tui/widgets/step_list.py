"""The steps of a calculation and its outcome, each with its mark: ✔ ▶ ✘ ·"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.content import Content
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from progress_protocol.states import RUNNING_STATES, State

from ..panel import Mark, PanelView

__all__ = ["StepList", "StepRow", "StepTimeline"]

LABELS = {
    State.STARTING: "Starting",
    State.IN_PROGRESS: "In progress",
    State.ALMOST_DONE: "Almost done",
}

STYLES = {
    Mark.DONE: "bold $text-success",
    Mark.CURRENT: "bold $text-primary",
    Mark.INTERRUPTED: "bold $text-error",
    Mark.PENDING: "dim",
}

#: Between two steps on one line.
GAP = "  "
#: Between two steps of the timeline: where the run went, in the mark's colour.
LINK = "│"


def items(view: PanelView | None) -> list[Content]:
    """One "mark label" per step, then the outcome."""
    return [item(mark, label) for mark, label in steps(view)]


def item(mark: Mark, label: str) -> Content:
    """ "✔ Starting", in the mark's style."""
    return Content.assemble((f"{mark.value} {label}", STYLES[mark]))


def steps(view: PanelView | None) -> list[tuple[Mark, str]]:
    """Each step's mark and label, then the outcome's."""
    marks = view.marks() if view else (Mark.PENDING,) * (len(RUNNING_STATES) + 1)
    state = view.state if view else State.IDLE
    outcome = "Canceled" if state is State.CANCELED else "Success"
    labels = [LABELS[step] for step in RUNNING_STATES] + [outcome]
    return list(zip(marks, labels, strict=True))


class StepRow(Widget):
    """The steps on as few lines as the width allows."""

    DEFAULT_CSS = """
    StepRow {
        height: auto;
    }
    """

    view: reactive[PanelView | None] = reactive(None, layout=True)

    def lines(self, width: int) -> list[Content]:
        """The items packed greedily into lines of ``width`` cells."""
        lines: list[Content] = []
        for item in items(self.view):
            if lines and lines[-1].cell_length + len(GAP) + item.cell_length <= width:
                lines[-1] = Content.assemble(lines[-1], GAP, item)
            else:
                lines.append(item)
        return lines

    def render(self) -> Content:
        return Content("\n").join(self.lines(self.size.width or 1_000))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width))


class StepTimeline(Widget):
    """One step a line, each joined to the next by a line: in its colour once done."""

    DEFAULT_CSS = """
    StepTimeline {
        height: auto;
    }
    """

    view: reactive[PanelView | None] = reactive(None)

    def render(self) -> Content:
        lines: list[Content] = []
        before: Mark | None = None
        for mark, label in steps(self.view):
            if before is not None:
                link = Mark.DONE if before is Mark.DONE else Mark.PENDING
                lines.append(Content.styled(LINK, STYLES[link]))
            lines.append(item(mark, label))
            before = mark
        return Content("\n").join(lines)


class StepList(Widget):
    """ "✔ Starting  ✘ In progress  · Almost done  ✘ Canceled", on as few lines as the
    width allows: a line breaks between two steps, never inside one. Or, where the
    app's stylesheet shows ``#timeline`` rather than ``#row`` (a tall pane), one step a
    line, as a timeline."""

    DEFAULT_CSS = """
    StepList {
        height: auto;
    }
    StepList.-empty, StepList #timeline {
        display: none;
    }
    """

    view: reactive[PanelView | None] = reactive(None)

    def compose(self) -> ComposeResult:
        yield StepRow(id="row").data_bind(view=StepList.view)
        yield StepTimeline(id="timeline").data_bind(view=StepList.view)

    def watch_view(self, view: PanelView | None) -> None:
        # No steps to show before the first state. A class, not display: the app's
        # stylesheet may hide the steps too.
        self.set_class(view is None, "-empty")

    def lines(self, width: int) -> list[Content]:
        """The steps in a row, in lines of ``width`` cells."""
        return self.query_one(StepRow).lines(width)
