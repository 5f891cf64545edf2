"""The steps of a calculation and its outcome, each with its mark: ✔ ▶ ✘ ·"""

from __future__ import annotations

from textual.content import Content
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from progress_protocol.states import RUNNING_STATES, State

from ..panel import Mark, PanelView

__all__ = ["StepList"]

LABELS = {
    State.STARTING: "Starting",
    State.IN_PROGRESS: "In progress",
    State.ALMOST_DONE: "Almost done",
}

STYLES = {
    Mark.DONE: "bold $success",
    Mark.CURRENT: "bold",
    Mark.INTERRUPTED: "bold $error",
    Mark.PENDING: "dim",
}

#: Between two steps on one line.
GAP = "  "


class StepList(Widget):
    """ "✔ Starting  ✘ In progress  · Almost done  ✘ Canceled", on as few lines as the
    width allows: a line breaks between two steps, never inside one."""

    DEFAULT_CSS = """
    StepList {
        height: auto;
    }
    StepList.-empty {
        display: none;
    }
    """

    view: reactive[PanelView | None] = reactive(None, layout=True)

    def watch_view(self, view: PanelView | None) -> None:
        # No steps to show before the first state. A class, not display: the app's
        # stylesheet may hide the steps too.
        self.set_class(view is None, "-empty")

    def items(self) -> list[Content]:
        """One "mark label" per step, then the outcome."""
        marks = self.view.marks() if self.view else (Mark.PENDING,) * (len(RUNNING_STATES) + 1)
        state = self.view.state if self.view else State.IDLE
        outcome = "Canceled" if state is State.CANCELED else "Success"
        labels = [LABELS[step] for step in RUNNING_STATES] + [outcome]
        return [
            Content.assemble((f"{mark.value} {label}", STYLES[mark]))
            for mark, label in zip(marks, labels, strict=True)
        ]

    def lines(self, width: int) -> list[Content]:
        """The items packed greedily into lines of ``width`` cells."""
        lines: list[Content] = []
        for item in self.items():
            if lines and lines[-1].cell_length + len(GAP) + item.cell_length <= width:
                lines[-1] = Content.assemble(lines[-1], GAP, item)
            else:
                lines.append(item)
        return lines

    def render(self) -> Content:
        return Content("\n").join(self.lines(self.size.width or 1_000))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width))
