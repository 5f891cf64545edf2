"""The calculation's state: in large letters when there is room, always as one line."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from progress_protocol.states import State

from ..panel import PanelView
from ..status import ConnectionInfo

__all__ = ["BLOCK_FONT", "SYMBOLS", "StateBanner", "big_text"]

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
    """The state's name in large letters (``#letters``, 43 cells wide at most) above
    a caption line (``#caption``) that always names it; the app's stylesheet hides the
    letters where there is no room. Dimmed and marked stale while disconnected."""

    DEFAULT_CSS = """
    StateBanner {
        height: auto;
        text-style: bold;
        color: $text-muted;
    }
    StateBanner > Static {
        width: 1fr;
        text-align: center;
    }
    StateBanner #letters {
        height: 3;
    }
    StateBanner.-running { color: $text-primary; }
    StateBanner.-success { color: $text-success; }
    StateBanner.-canceled { color: $text-error; }
    /* Stale: the last state known, in the muted colour and slanted (it says so too). */
    StateBanner.-stale { color: $text-muted; text-style: bold italic; }
    StateBanner.-empty #letters { display: none; }
    """

    view: reactive[PanelView | None] = reactive(None)
    connection: reactive[ConnectionInfo | None] = reactive(None)
    stale: reactive[bool] = reactive(False)

    def compose(self) -> ComposeResult:
        yield Static(id="letters", markup=False)
        yield Static(id="caption", markup=False)

    def on_mount(self) -> None:
        self._update()

    def watch_view(self, view: PanelView | None) -> None:
        state = view.state if view else None
        self.set_class(view is None, "-empty")
        self.set_class(state is not None and state.is_running, "-running")
        self.set_class(state is State.SUCCESS, "-success")
        self.set_class(state is State.CANCELED, "-canceled")
        self._update()

    def watch_connection(self) -> None:
        self._update()

    def watch_stale(self, stale: bool) -> None:
        self.set_class(stale, "-stale")
        self._update()

    def caption(self) -> str:
        """The one line that names the state (or says why there is none yet)."""
        if self.view is None:
            info = self.connection
            if info is not None and info.stopped:
                return "✘ Not connected"
            return "◌ Connecting…"
        state = self.view.state
        caption = f"{SYMBOLS[state]} {state.value}"
        if self.stale:
            caption += " (stale)"
        return caption

    def _update(self) -> None:
        if not self.is_mounted:
            return
        letters = "" if self.view is None else big_text(self.view.state.value.replace("_", " "))
        self.query_one("#letters", Static).update(Text(letters))
        self.query_one("#caption", Static).update(Text(self.caption()))
