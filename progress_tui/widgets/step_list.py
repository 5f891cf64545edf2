"""The three steps of a calculation: done, current and pending."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from progress_protocol.states import RUNNING_STATES, State

from ..run import RunView

__all__ = ["StepList"]

LABELS = {
    State.STARTING: "Starting",
    State.IN_PROGRESS: "In progress",
    State.ALMOST_DONE: "Almost done",
}


class StepList(Widget):
    """One line per step: ✔ done, ▶ current, ✘ where a cancel hit, · pending."""

    DEFAULT_CSS = """
    StepList {
        height: auto;
        padding: 0 1;
    }
    """

    run: reactive[RunView | None] = reactive(None)

    def render(self) -> Text:
        state = self.run.state if self.run else State.IDLE
        reached = self.run.reached if self.run else None
        current = RUNNING_STATES.index(reached) if reached in RUNNING_STATES else -1
        text = Text()
        for index, step in enumerate(RUNNING_STATES):
            if index < current or (index == current and state is State.SUCCESS):
                text.append("✔ ", style="bold green").append(LABELS[step])
            elif index == current and state is State.CANCELED:
                text.append("✘ ", style="bold red").append(LABELS[step], style="red")
            elif index == current:
                text.append("▶ ", style="bold").append(LABELS[step], style="bold")
            else:
                text.append("· ", style="dim").append(LABELS[step], style="dim")
            text.append("\n")
        if state is State.CANCELED:
            text.append("✘ ", style="bold red").append("Canceled", style="bold red")
        elif state is State.SUCCESS:
            text.append("✔ ", style="bold green").append("Success", style="bold green")
        else:
            text.append("· ", style="dim").append("Success", style="dim")
        return text
