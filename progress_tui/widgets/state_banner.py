"""The calculation's state in large letters, coloured, with a symbol."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from progress_protocol.states import State

from ..run import RunView

__all__ = ["BLOCK_FONT", "StateBanner", "big_text"]

# Three rows per letter, three cells wide: just the letters the states need.
BLOCK_FONT: dict[str, tuple[str, str, str]] = {
    "A": ("╭─╮", "├─┤", "╵ ╵"),
    "C": ("╭─╴", "│  ", "╰─╴"),
    "D": ("┌─╮", "│ │", "└─╯"),
    "E": ("┌─╴", "├─ ", "└─╴"),
    "G": ("╭─╴", "│╶╮", "╰─╯"),
    "I": ("╶┬╴", " │ ", "╶┴╴"),
    "L": ("╷  ", "│  ", "└─╴"),
    "M": ("┌┬┐", "│││", "╵╵╵"),
    "N": ("┌╮╷", "│││", "╵╰┘"),
    "O": ("╭─╮", "│ │", "╰─╯"),
    "P": ("┌─╮", "├─╯", "╵  "),
    "R": ("┌─╮", "├┬╯", "╵╰╴"),
    "S": ("╭─╴", "╰─╮", "╶─╯"),
    "T": ("╶┬╴", " │ ", " ╵ "),
    "U": ("╷ ╷", "│ │", "╰─╯"),
    " ": ("   ", "   ", "   "),
}

SYMBOLS: dict[State, str] = {
    State.IDLE: "○",
    State.STARTING: "▶",
    State.IN_PROGRESS: "▶",
    State.ALMOST_DONE: "▶",
    State.SUCCESS: "✔",
    State.CANCELED: "✘",
}


def big_text(word: str) -> str:
    """``word`` in the block font, three lines; unknown characters become spaces."""
    glyphs = [BLOCK_FONT.get(char, BLOCK_FONT[" "]) for char in word.upper()]
    return "\n".join(" ".join(glyph[row] for glyph in glyphs) for row in range(3))


class StateBanner(Widget):
    """Shows the run's state; dimmed and marked stale while disconnected."""

    DEFAULT_CSS = """
    StateBanner {
        height: 5;
        content-align: center middle;
        text-style: bold;
        color: $text-muted;
    }
    StateBanner.-running { color: $accent; }
    StateBanner.-success { color: $success; }
    StateBanner.-canceled { color: $error; }
    StateBanner.-stale { color: $text-disabled; text-style: dim; }
    """

    run: reactive[RunView | None] = reactive(None)
    stale: reactive[bool] = reactive(False)

    def watch_run(self, run: RunView | None) -> None:
        state = run.state if run else None
        self.set_class(state is not None and state.is_running, "-running")
        self.set_class(state is State.SUCCESS, "-success")
        self.set_class(state is State.CANCELED, "-canceled")

    def watch_stale(self, stale: bool) -> None:
        self.set_class(stale, "-stale")

    def render(self) -> Text:
        if self.run is None:
            return Text("waiting for the server…")
        state = self.run.state
        label = state.value.replace("_", " ")
        caption = f"{SYMBOLS[state]} {state.value}"
        if self.stale:
            caption += "  (stale: last known state)"
        return Text(f"{big_text(label)}\n{caption}", justify="center")
