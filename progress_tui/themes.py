"""The app's colours: which theme it starts with, in which terminal, and its own theme for
terminals of few colours.

A terminal of 16 colours (``TERM=screen``, ``TERM=xterm`` without ``COLORTERM``) cannot
show a theme's shades: Rich rounds each to the nearest of its 16, and two states (or a
background and a border) become one colour. There the app uses :data:`ANSI`: the
terminal's own colours, its own background and foreground, and only the bright colours
for text (readable on a dark background). Under ``NO_COLOR`` the app has no colour at
all: the terminal's foreground on its background, and bold, dim, italic or reverse where
a colour would have said something (``app.tcss`` and the widgets say which, under
``:nocolor``).

Textual is told before it builds its filters (:func:`plain`): ``ansi_color`` makes
``NO_COLOR`` strip the colours (Textual's ``NoColor``) rather than turn them to greys
of low contrast (its ``Monochrome``). And there, text is :class:`Legible`: inactive
keys and buttons are struck through rather than dim.

The words the app colours by name (the event log's "red" line, the history's "green"
outcome) are Rich's ANSI colours: in a terminal of 256 colours or more, Textual shows
them in :data:`PALETTE`.
"""

from __future__ import annotations

import io
import logging
from dataclasses import fields
from functools import lru_cache

from rich.color import Color, ColorType
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.terminal_theme import TerminalTheme
from textual import constants
from textual.color import Color as TextualColor
from textual.filter import LineFilter
from textual.theme import BUILTIN_THEMES, Theme

__all__ = [
    "ANSI",
    "DARK",
    "PALETTE",
    "THEMES",
    "Legible",
    "choose",
    "colour_system",
    "names",
    "plain",
]

logger = logging.getLogger(__name__)

#: The theme of terminals of 16 colours or fewer.
ANSI = "progress-ansi"
#: Elsewhere, unless the user chose another.
DARK = "progress-dark"

# The bright colours: readable as text on a dark background (4.5:1 or more in xterm's
# and Textual's palettes); the dark ones are not (xterm's red on black: 3.6:1).
_TEXT = {
    "primary": "ansi_bright_cyan",
    "accent": "ansi_bright_cyan",
    "success": "ansi_bright_green",
    "warning": "ansi_bright_yellow",
    "error": "ansi_bright_red",
}


def _rgb(red: int, green: int, blue: int) -> tuple[int, int, int]:
    return (red, green, blue)


#: How a dark theme shows the ANSI colours of the app's words: Textual's Monokai, made
#: lighter where it is too dark to read on a dark theme's backgrounds (its red: 4:1).
PALETTE = TerminalTheme(
    _rgb(12, 12, 12),
    _rgb(217, 217, 217),
    [
        _rgb(26, 26, 26),
        _rgb(255, 95, 135),
        _rgb(152, 224, 36),
        _rgb(253, 151, 31),
        _rgb(170, 125, 255),
        _rgb(255, 95, 215),
        _rgb(88, 209, 235),
        _rgb(196, 197, 181),
    ],
    [
        _rgb(138, 138, 138),
        _rgb(255, 95, 135),
        _rgb(152, 224, 36),
        _rgb(224, 213, 97),
        _rgb(170, 125, 255),
        _rgb(255, 95, 215),
        _rgb(88, 209, 235),
        _rgb(246, 246, 239),
    ],
)

#: The app's own themes: every one of Textual's is offered too.
THEMES: dict[str, Theme] = {
    # Textual's dark theme, calmer: one accent (its blue: a run, the bar, the keys), and
    # greys without a tint, which 256 colours show as greys (Rich rounds textual-dark's
    # blue-grey panel to navy). Its red is one of the 256 (white reads on it there too).
    DARK: Theme(
        name=DARK,
        primary="#0178D4",
        secondary="#004578",
        accent="#58A6FF",
        warning="#FFA62B",
        error="#AF005F",
        success="#4EBF71",
        foreground="#E0E0E0",
        background="#121212",
        surface="#1E1E1E",
        panel="#2A2A2A",
        dark=True,
        variables={
            # A scrollbar that shows (3:1) on the panels it scrolls.
            "scrollbar": "#767676",
            "scrollbar-hover": "#8A8A8A",
            "scrollbar-active": "#9E9E9E",
            "scrollbar-background": "#1E1E1E",
            "scrollbar-background-hover": "#1E1E1E",
            "scrollbar-background-active": "#1E1E1E",
            "scrollbar-corner-color": "#1E1E1E",
        },
    ),
    ANSI: Theme(
        name=ANSI,
        primary="ansi_blue",
        secondary="ansi_cyan",
        accent=_TEXT["accent"],
        warning=_TEXT["warning"],
        error=_TEXT["error"],
        success=_TEXT["success"],
        foreground="ansi_default",
        background="ansi_default",
        surface="ansi_default",
        panel="ansi_default",
        boost="ansi_default",
        dark=True,
        # Every variable the app and Textual's widgets use, named here: Textual derives
        # the others from these differently from one version to the next.
        variables={
            **{f"text-{name}": colour for name, colour in _TEXT.items()},
            "text": "ansi_default",
            # (Textual 8's buttons, toggles and tooltips, in a terminal's colours.)
            "ansi-background": "ansi_black",
            "ansi-foreground": "ansi_white",
            "text-muted": "ansi_default",
            "text-disabled": "ansi_default",
            "foreground-muted": "ansi_default",
            **{f"{name}-muted": "ansi_default" for name in _TEXT},
            "border": "ansi_bright_cyan",
            "border-blurred": "ansi_default",
            "surface-active": "ansi_default",
            "block-cursor-foreground": "ansi_black",
            "block-cursor-background": "ansi_bright_cyan",
            "block-cursor-text-style": "bold",
            "block-cursor-blurred-foreground": "ansi_default",
            "block-cursor-blurred-background": "ansi_default",
            "block-cursor-blurred-text-style": "reverse",
            "block-hover-background": "ansi_default",
            "footer-foreground": "ansi_default",
            "footer-background": "ansi_default",
            "footer-key-foreground": "ansi_bright_cyan",
            "footer-key-background": "ansi_default",
            "footer-description-foreground": "ansi_default",
            "footer-description-background": "ansi_default",
            "footer-item-background": "ansi_default",
            "scrollbar": "ansi_bright_black",
            "scrollbar-hover": "ansi_white",
            "scrollbar-active": "ansi_bright_white",
            "scrollbar-background": "ansi_default",
            "scrollbar-background-hover": "ansi_default",
            "scrollbar-background-active": "ansi_default",
            "scrollbar-corner-color": "ansi_default",
            "input-cursor-background": "ansi_default",
            "input-cursor-foreground": "ansi_default",
            "input-cursor-text-style": "reverse",
            "input-selection-background": "ansi_cyan",
            "input-selection-foreground": "ansi_black",
            "button-foreground": "ansi_default",
            "button-color-foreground": "ansi_black",
            "button-focus-text-style": "bold reverse",
        },
        # Textual 7 and later: the theme is made of the terminal's colours (Textual 6
        # has no such field; the app says so with ``ansi_color``).
        **({"ansi": True} if "ansi" in {field.name for field in fields(Theme)} else {}),
    ),
}


def names() -> list[str]:
    """Every theme the app offers, its own first."""
    return [*THEMES, *(name for name in BUILTIN_THEMES if name not in THEMES)]


def colour_system() -> str | None:
    """How many colours the terminal shows, as Textual's console will find it: "truecolor",
    "256", "standard" (16), "windows" (16) or None (none at all)."""
    console = Console(
        color_system=constants.COLOR_SYSTEM,  # type: ignore[arg-type]
        force_terminal=True,
        file=io.StringIO(),
    )
    return console.color_system


def plain(no_color: bool, system: str | None) -> bool:
    """Whether the app uses the terminal's own colours (or none): under ``NO_COLOR``, or
    where the terminal shows 16 colours or fewer."""
    return no_color or system not in ("truecolor", "256")


def choose(chosen: str | None, remembered: str | None, *, plain: bool, known: list[str]) -> str:
    """The theme the app starts with: the one ``chosen`` for this run (``--theme``);
    else :data:`ANSI` where the app is :func:`plain`; else the one ``remembered`` from the
    palette; else :data:`DARK`. A remembered theme that is not (or no longer) one of
    those ``known`` is left out, with a log line."""
    if chosen is not None:
        return chosen
    if plain:
        return ANSI
    if remembered is not None:
        if remembered in known:
            return remembered
        logger.warning("the remembered theme %r is not one of the themes: left out", remembered)
    return DARK


#: Not dim.
_NOT_DIM = Style(dim=False)
#: The dark colours of text (red to cyan), and their bright twins.
_BRIGHTER = {number: Color.from_ansi(number + 8) for number in range(1, 7)}


class Legible(LineFilter):
    """Text that reads on the terminal's own (dark) background, where the app has only
    its colours or none (:func:`plain`): nothing dim, which a terminal shows at half its
    colour or less (xterm's grey on black: 4.4:1); and the bright twin of a dark colour
    (the event log's red: xterm's on black is 3.6:1, its bright red 5.3:1)."""

    def apply(self, segments: list[Segment], background: TextualColor) -> list[Segment]:
        return [
            Segment(text, _legible(style), control) if style is not None else segment
            for segment in segments
            for text, style, control in (segment,)
        ]


@lru_cache(maxsize=1024)
def _legible(style: Style) -> Style:
    if style.dim:
        style += _NOT_DIM
    color = style.color
    if color is not None and color.type is ColorType.STANDARD and color.number in _BRIGHTER:
        style += Style(color=_BRIGHTER[color.number])
    return style
