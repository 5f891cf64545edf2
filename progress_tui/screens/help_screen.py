"""The help screen (? or F1): the keys, the server, this client's name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label

__all__ = ["HelpScreen"]


class HelpScreen(ModalScreen[None]):
    """A panel over the app, two tables that wrap to any width; Escape, ?, F1 or q
    closes it.

    Args:
        title: The panel's title.
        keys: (keys, what they do) rows.
        about: (label, value) rows: the URL, the server's version, this client's name...
            Shown as plain text, never markup.
    """

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 84;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        padding: 0 1;
        border: round $primary;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        background: $surface;
        scrollbar-size-vertical: 1;
    }
    HelpScreen Grid {
        grid-size: 2;
        grid-columns: auto 1fr;
        grid-gutter: 0 2;
        height: auto;
    }
    HelpScreen Grid Label {
        width: 1fr;
    }
    HelpScreen .name {
        text-style: bold;
    }
    HelpScreen #keys .name {
        color: $accent;
    }
    HelpScreen #about {
        margin-top: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,f1,q", "close", "Close"),
    ]

    def __init__(
        self,
        *,
        title: str,
        keys: Sequence[tuple[str, str]],
        about: Sequence[tuple[str, str]],
    ) -> None:
        super().__init__()
        self.heading = title
        self.keys = keys
        self.about = about

    def compose(self) -> ComposeResult:
        with VerticalScroll() as panel:
            panel.border_title = self.heading
            panel.border_subtitle = "Esc closes"
            for table, rows in (("keys", self.keys), ("about", self.about)):
                with Grid(id=table):
                    for name, text in rows:
                        yield Label(name, classes="name", markup=False)
                        yield Label(text, markup=False)

    def action_close(self) -> None:
        self.dismiss()
