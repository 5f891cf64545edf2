"""How progress-tui looks in each kind of terminal, and how it uses the room it has: no
colour under NO_COLOR, the terminal's own colours and background in 16, a calm screen
while all is well, a timeline where the pane is tall, a hanging indent in the log.

Each test looks at the screen as the terminal gets it (tests/tui/looks.py); the contrast
of every character, in every kind of terminal, is tests/tui/test_snapshots.py's."""

from __future__ import annotations

import colorsys
from collections.abc import Iterator

import pytest
from rich.color import Color, ColorType
from rich.segment import Segment
from rich.style import Style
from textual.widgets import Button, Footer

from progress_tui.app import ProgressApp
from progress_tui.widgets.connection_bar import ConnectionStatusBar
from progress_tui.widgets.event_log import EventLog
from progress_tui.widgets.spinner import Spinner
from progress_tui.widgets.state_banner import StateBanner
from progress_tui.widgets.step_list import StepList
from tests.tui.looks import TERMINALS, lines, terminal
from tests.tui.scripted import ScriptedClient, rendered
from tests.tui.test_snapshots import LOOP_NOW, STATES, T0, settle

pytestmark = pytest.mark.usefixtures("utc")


class Seen:
    """The app in one of the snapshots' states, in a ``kind`` of terminal."""

    def __init__(self, kind: str, state: str) -> None:
        self.kind = TERMINALS[kind]
        with terminal(self.kind):
            self.client = ScriptedClient(*STATES[state])
            self.app = ProgressApp(
                self.client, clock=lambda: T0 + 3.0, now=lambda: LOOP_NOW, animate=False
            )

    def lines(self) -> list[list[Segment]]:
        return lines(self.app, self.kind)

    def styles(self) -> Iterator[Style]:
        """The style of every segment on screen."""
        for line in self.lines():
            for _, style, _ in line:
                if style is not None:
                    yield style

    def style_of(self, text: str, *, row: int | None = None) -> Style:
        """The style of the first character of ``text`` where it first shows (in
        ``row``, if given)."""
        for y, line in enumerate(self.lines()):
            if row is not None and y != row:
                continue
            plain = "".join(segment.text for segment in line)
            x = plain.find(text)
            if x < 0:
                continue
            for segment in line:
                if x < len(segment.text):
                    return segment.style or Style()
                x -= len(segment.text)
        raise AssertionError(f"{text!r} is not on screen")


def plain(color: Color | None) -> bool:
    """No colour: the terminal's own foreground or background."""
    return color is None or color.type is ColorType.DEFAULT


def hue(color: Color | None) -> float:
    """The hue of a colour, 0 to 360 degrees."""
    assert color is not None and color.triplet is not None
    red, green, blue = color.triplet.normalized
    return colorsys.rgb_to_hls(red, green, blue)[0] * 360


def saturated(color: Color | None) -> bool:
    if color is None or color.triplet is None:
        return False
    red, green, blue = color.triplet.normalized
    return colorsys.rgb_to_hls(red, green, blue)[2] > 0.3


async def test_no_color_means_no_colour_and_says_it_with_styles() -> None:
    """Under NO_COLOR nothing has a colour (not greys of low contrast): the terminal's
    foreground on its background everywhere. The state and the current step are bold,
    and trouble (reconnecting) is in reverse video."""
    for state in ("running", "reconnecting"):
        seen = Seen("no-color", state)
        async with seen.app.run_test(size=(80, 24)) as pilot:
            await seen.client.played(pilot)
            await settle(pilot)
            coloured = {
                str(style)
                for style in seen.styles()
                if not plain(style.color) or not plain(style.bgcolor)
            }
            assert not coloured
            assert seen.style_of("▶ In progress").bold
            status = seen.app.query_one(ConnectionStatusBar).region.y
            if state == "running":
                assert seen.style_of("▶ IN_PROGRESS").bold
                assert not seen.style_of("● Connected", row=status).reverse
            else:
                assert seen.style_of("↻ Reconnecting", row=status).reverse


async def test_sixteen_colours_keep_the_states_apart_on_the_terminals_background() -> None:
    """In 16 colours (TERM=screen): IN_PROGRESS, CANCELED and the Cancel button are
    each in a colour of their own, of the terminal's 16; and everything stands on the
    terminal's own background (no black painted over a part of it), but the bar that
    says the connection is in trouble, in reverse video."""
    colours = {}
    for state in ("running", "canceled", "reconnecting"):
        seen = Seen("16", state)
        async with seen.app.run_test(size=(80, 24)) as pilot:
            await seen.client.played(pilot)
            await settle(pilot)
            status = seen.app.query_one(ConnectionStatusBar).region.y
            # (Textual 6 paints a button black inside, whatever its style says: buttons
            # are left out.)
            buttons = [button.region for button in seen.app.query(Button)]
            for y, line in enumerate(seen.lines()):
                x = 0
                for text, style, _ in line:
                    in_button = any(region.contains(x, y) for region in buttons)
                    x += len(text)
                    if not in_button:
                        assert style is None or plain(style.bgcolor), (y, text, str(style))
                    if style is not None and style.color is not None and not plain(style.color):
                        assert style.color.type is ColorType.STANDARD, (text, str(style))
                        # The trouble bar is the only text in reverse.
                        words = any(char.isalnum() for char in text)
                        assert not style.reverse or y == status or not words, text
            if state == "running":
                colours["running"] = seen.style_of("▶ IN_PROGRESS").color
                colours["cancel"] = seen.style_of("Cancel").color
            elif state == "canceled":
                colours["canceled"] = seen.style_of("✘ CANCELED").color
            else:
                assert seen.style_of("↻ Reconnecting", row=status).reverse
    assert colours["running"] not in (colours["canceled"], colours["cancel"])
    assert all(not plain(colour) for colour in colours.values())


async def test_all_is_well_quietly_and_in_one_accent() -> None:
    """Connected and running, the screen is calm: the status bar is as quiet as the keys
    below it (no green bar), and the state, the spinner, the current step and the
    progress are in one colour. Trouble is loud: reconnecting, the bar takes the
    warning's colour."""
    seen = Seen("truecolor", "running")
    async with seen.app.run_test(size=(80, 24)) as pilot:
        await seen.client.played(pilot)
        await settle(pilot)
        status = seen.app.query_one(ConnectionStatusBar).region.y
        footer = seen.app.query_one(Footer).region.y
        quiet = seen.style_of("Resync", row=footer).bgcolor  # r, while connected
        bar = seen.style_of("Connected", row=status)
        assert bar.bgcolor == quiet
        assert not saturated(bar.color)
        accent = [
            seen.style_of("▶ IN_PROGRESS").color,
            seen.style_of("▶ In progress").color,
            seen.style_of("━").color,  # the progress bar's done part
            seen.style_of(Spinner.FRAMES[0]).color,
        ]
        assert all(saturated(colour) for colour in accent)
        hues = [hue(colour) for colour in accent]
        assert max(hues) - min(hues) < 20, hues
    seen = Seen("truecolor", "reconnecting")
    async with seen.app.run_test(size=(80, 24)) as pilot:
        await seen.client.played(pilot)
        await settle(pilot)
        status = seen.app.query_one(ConnectionStatusBar).region.y
        footer = seen.app.query_one(Footer).region.y
        loud = seen.style_of("↻ Reconnecting", row=status).bgcolor
        assert loud != seen.style_of("Reconnect", row=footer).bgcolor
        assert saturated(loud)


async def test_a_tall_wide_pane_uses_its_height() -> None:
    """At 250x70 the calculation column is not a strip at the top of an empty one: the
    state stands between two rules, the steps go down a timeline, and what it shows
    spans a third of its height at least (15 of its 67 rows, before). At 80x24 the
    steps stay in a row."""
    seen = Seen("truecolor", "running")
    async with seen.app.run_test(size=(250, 70)) as pilot:
        await seen.client.played(pilot)
        await settle(pilot)
        column = rendered(seen.app, "#calculation").splitlines()
        used = [y for y, line in enumerate(column) if line.strip()]
        assert used[-1] - used[0] + 1 >= len(column) / 3, (used, len(column))
        steps = [
            line.strip() for line in rendered(seen.app, seen.app.query_one(StepList)).splitlines()
        ]
        assert steps == ["✔ Starting", "│", "▶ In progress", "│", "· Almost done", "│", "· Success"]
        banner = rendered(seen.app, seen.app.query_one(StateBanner)).splitlines()
        assert set(banner[0].strip()) == {"─"} and set(banner[-1].strip()) == {"─"}
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        steps = [
            line.strip() for line in rendered(seen.app, seen.app.query_one(StepList)).splitlines()
        ]
        assert steps == ["✔ Starting  ▶ In progress  · Almost done", "· Success"]


async def test_wrapped_log_lines_hang_under_their_message() -> None:
    """At 80x24 an entry too long for the event log goes on under its message, not
    under its time: the time stands alone in its column."""
    seen = Seen("truecolor", "reconnecting")
    async with seen.app.run_test(size=(80, 24)) as pilot:
        await seen.client.played(pilot)
        await settle(pilot)
        log = [
            line.strip("│").rstrip(" │▄▀█")
            for line in rendered(seen.app, seen.app.query_one(EventLog)).splitlines()[1:-1]
        ]
        entries = [line for line in log if line.strip()[:1].isdigit()]
        following = [line for line in log if line.strip() and not line.strip()[:1].isdigit()]
        assert entries and following
        indent = len(entries[0]) - len(entries[0].lstrip()) + len("18:00:03 ")
        assert all(len(line) - len(line.lstrip()) == indent for line in following), log
