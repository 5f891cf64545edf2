"""How the app looks in a given terminal: its screen as that terminal shows it (an SVG),
and the contrast of every character on it.

Textual's ``export_screenshot`` draws every screen in truecolor, whatever the terminal:
it shows what Textual composed, not what a terminal of 16 colours shows (Rich rounds
each colour to the nearest of its 16 as the driver writes). :func:`svg` and
:func:`cells` take the screen's lines as the compositor draws them (the app's filters
applied: ``NO_COLOR``'s among them), round each colour as Rich does for the terminal's
:class:`Terminal.system`, and resolve what the terminal decides (its default foreground
and background, its 16 colours, dim) with a palette: the app's own
(``App.ansi_theme``, Textual's picture of a dark terminal) and xterm's.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from rich._palettes import EIGHT_BIT_PALETTE
from rich.color import Color, ColorSystem, ColorType
from rich.console import Console
from rich.segment import Segment, Segments
from rich.style import Style
from rich.terminal_theme import TerminalTheme
from textual.app import App
from textual.geometry import Region
from textual.widgets import Button

from progress_tui.widgets.key_bar import KeyBar

__all__ = [
    "DECORATION",
    "TERMINALS",
    "XTERM",
    "Cell",
    "Terminal",
    "cells",
    "contrast",
    "inactive",
    "lines",
    "low_contrast",
    "svg",
    "terminal",
]

#: xterm's palette, white on black.
XTERM = TerminalTheme(
    (0, 0, 0),
    (229, 229, 229),
    [
        (0, 0, 0),
        (205, 0, 0),
        (0, 205, 0),
        (205, 205, 0),
        (0, 0, 238),
        (205, 0, 205),
        (0, 205, 205),
        (229, 229, 229),
    ],
    [
        (127, 127, 127),
        (255, 0, 0),
        (0, 255, 0),
        (255, 255, 0),
        (92, 92, 255),
        (255, 0, 255),
        (0, 255, 255),
        (255, 255, 255),
    ],
)

#: The edges Textual draws around a button, and beside the palette's key in the Footer:
#: shading, pure decoration (WCAG asks no contrast of it; the label says what it is).
DECORATION = frozenset("▔▁▏▕")

#: How much of its colour a dim character keeps (the rest is the background's): about
#: what terminals show (xterm, VTE and kitty keep 50-66 %), at the low end.
DIM = 0.5


@dataclass(frozen=True, slots=True)
class Terminal:
    """A kind of terminal: the environment that says so, and the colours it shows."""

    name: str
    environ: dict[str, str | None]
    system: ColorSystem


TERMINALS = {
    terminal.name: terminal
    for terminal in (
        Terminal(
            "truecolor",
            {"COLORTERM": "truecolor", "TERM": "xterm-256color", "NO_COLOR": None},
            ColorSystem.TRUECOLOR,
        ),
        Terminal(
            "256",
            {"COLORTERM": None, "TERM": "xterm-256color", "NO_COLOR": None},
            ColorSystem.EIGHT_BIT,
        ),
        Terminal(
            "16", {"COLORTERM": None, "TERM": "screen", "NO_COLOR": None}, ColorSystem.STANDARD
        ),
        # NO_COLOR in a terminal that has every colour: none is shown all the same.
        Terminal(
            "no-color",
            {"COLORTERM": "truecolor", "TERM": "xterm-256color", "NO_COLOR": "1"},
            ColorSystem.TRUECOLOR,
        ),
    )
}


@contextmanager
def terminal(kind: Terminal) -> Iterator[None]:
    """The environment of a ``kind`` of terminal (for the app to be made in)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TEXTUAL_COLOR_SYSTEM", raising=False)
        for name, value in kind.environ.items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        yield


def lines(app: App[None], kind: Terminal) -> list[list[Segment]]:
    """The screen's lines as ``kind`` of terminal gets them: the app's filters applied
    (the compositor does), each colour rounded to the terminal's."""

    def rounded(color: Color | None) -> Color | None:
        return None if color is None else color.downgrade(kind.system)

    strips = app.screen._compositor.render_strips()
    return [
        [
            Segment(text, style + Style.from_color(rounded(style.color), rounded(style.bgcolor)))
            if style is not None
            else Segment(text)
            for text, style, _ in strip
        ]
        for strip in strips
    ]


def svg(app: App[None], kind: Terminal, *, title: str, palette: TerminalTheme) -> str:
    """The screen as ``kind`` of terminal shows it, with ``palette``'s colours."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",  # the colours are rounded already
        no_color=False,  # (the test's NO_COLOR is the app's, not this console's)
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    for line in lines(app, kind):
        console.print(Segments([*line, Segment.line()]), end="")
    return console.export_svg(title=title, theme=palette)


def rgb(
    color: Color | None, default: tuple[int, int, int], palette: TerminalTheme
) -> tuple[int, int, int]:
    """A colour as the terminal shows it, with ``palette``'s colours."""
    if color is None or color.type is ColorType.DEFAULT:
        return default
    if color.type in (ColorType.STANDARD, ColorType.WINDOWS) or (
        color.type is ColorType.EIGHT_BIT and color.number is not None and color.number < 16
    ):
        assert color.number is not None
        return tuple(palette.ansi_colors[color.number])  # type: ignore[return-value]
    if color.type is ColorType.EIGHT_BIT:
        assert color.number is not None
        return tuple(EIGHT_BIT_PALETTE[color.number])  # type: ignore[return-value]
    assert color.triplet is not None
    return tuple(color.triplet)  # type: ignore[return-value]


def luminance(color: tuple[int, int, int]) -> float:
    """WCAG 2's relative luminance."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = color
    return 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)


def contrast(one: tuple[int, int, int], other: tuple[int, int, int]) -> float:
    """WCAG 2's contrast ratio, 1 to 21."""
    lighter, darker = sorted((luminance(one), luminance(other)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@dataclass(frozen=True, slots=True)
class Cell:
    """One character on screen, in the colours the terminal shows it."""

    x: int
    y: int
    char: str
    foreground: tuple[int, int, int]
    background: tuple[int, int, int]

    @property
    def contrast(self) -> float:
        return contrast(self.foreground, self.background)

    @property
    def is_graphic(self) -> bool:
        """A line, a block, a shape or a Braille dot (a border, the progress bar, the
        spinner): WCAG asks 3:1 of graphics, 4.5:1 of text."""
        code = ord(self.char)
        return 0x2500 <= code <= 0x25FF or 0x2800 <= code <= 0x28FF

    @property
    def least(self) -> float:
        """The least contrast this character must have: 4.5:1 for text, 3:1 for a
        graphic, none for decoration."""
        if self.char in DECORATION:
            return 1.0
        return 3.0 if self.is_graphic else 4.5


def cells(app: App[None], kind: Terminal, palette: TerminalTheme) -> list[Cell]:
    """Every character that is not a space, as ``kind`` of terminal shows it with
    ``palette``'s colours (reverse swaps them; dim keeps :data:`DIM` of the colour)."""
    found = []
    default_fg = tuple(palette.foreground_color)
    default_bg = tuple(palette.background_color)
    for y, line in enumerate(lines(app, kind)):
        x = 0
        for text, style, _ in line:
            style = style or Style()
            fg = rgb(style.color, default_fg, palette)  # type: ignore[arg-type]
            bg = rgb(style.bgcolor, default_bg, palette)  # type: ignore[arg-type]
            if style.reverse:
                fg, bg = bg, fg
            if style.dim:
                fg = (
                    round(bg[0] + (fg[0] - bg[0]) * DIM),
                    round(bg[1] + (fg[1] - bg[1]) * DIM),
                    round(bg[2] + (fg[2] - bg[2]) * DIM),
                )
            for char in text:
                if not char.isspace() and unicodedata.category(char) != "Cc":
                    found.append(Cell(x, y, char, fg, bg))
                x += 1  # (the app draws no wide characters)
    return found


def low_contrast(app: App[None], kind: Terminal, palette: TerminalTheme) -> list[str]:
    """The characters below their least contrast (but in the :func:`inactive` controls),
    a line each: where, what, the colours and their contrast."""
    found = []
    exempt = inactive(app)
    for cell in cells(app, kind, palette):
        if any(region.contains(cell.x, cell.y) for region in exempt):
            continue
        if cell.contrast < cell.least:
            found.append(
                f"({cell.x},{cell.y}) {cell.char!r} rgb{cell.foreground} on rgb{cell.background}:"
                f" {cell.contrast:.2f} < {cell.least:g}"
            )
    return found


def inactive(app: App[None]) -> list[Region]:
    """Where the inactive controls are: disabled buttons, and the keys dimmed in the
    Footer or the key bar. WCAG 1.4.3 asks no contrast of "text that is part of an
    inactive user interface component": they are dimmed on purpose, and a key pressed
    says why it does nothing."""
    regions = [button.region for button in app.screen.query(Button) if button.disabled]
    regions += [key.region for key in app.screen.query("FooterKey.-disabled")]
    for bar in app.screen.query(KeyBar):
        if not bar.display:
            continue
        x, y = bar.content_region.offset
        for span in bar.fitting(bar.content_region.width).spans:
            if span.style in ("dim", "strike", "dim strike", "strike $foreground"):
                regions.append(Region(x + span.start, y, span.end - span.start, 1))
    return regions
