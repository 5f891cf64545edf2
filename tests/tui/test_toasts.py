"""progress_tui.toasts finds Textual's notifications where it expects them, moves and
styles them; and no other module of progress_tui names Textual's toast widgets.

Textual does not export them (textual/widgets/_toast.py): these tests are the alarm for
a Textual upgrade that moves them, each failure a sentence saying what changed.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Label

from progress_tui import toasts
from tests.tui.scripted import eventually, until

WIDTH, HEIGHT = 80, 24
#: Where the tests stand the notifications: 10 cells from the left, 5 rows up.
LEFT, BOTTOM = 10, 5

MEND = (
    " progress_tui/toasts.py, the one module that knows Textual's toast widgets, must "
    "follow the new Textual: read textual/widgets/_toast.py and textual/screen.py "
    "(_extend_compose), mend toasts.py and its CSS, and check that notifications still "
    "stand clear of the progress (tests/tui/test_panes.py, test_snapshots.py)."
)


class Bare(App[None]):
    """An app with nothing but a line, and the module's CSS."""

    CSS = toasts.CSS

    def compose(self) -> ComposeResult:
        yield Label("under the notifications")


def named(widget: object, name: str) -> bool:
    return type(widget).__name__ == name


async def test_textuals_toasts_are_where_toasts_finds_them() -> None:
    """Each screen holds one ToastRack among its own children, and a notification is a
    Toast inside it that shows the title and the message."""
    app = Bare()
    async with app.run_test(size=(WIDTH, HEIGHT), notifications=True) as pilot:
        app.notify("the message", title="The title", timeout=60)
        screen = app.screen
        racks = [child for child in screen.children if named(child, toasts.RACK)]
        assert len(racks) == 1, (
            f"Textual's screen no longer holds one {toasts.RACK} among its children (it "
            f"has {[type(child).__name__ for child in screen.children]}): notifications "
            f"cannot be moved." + MEND
        )
        await until(
            pilot,
            lambda: bool(toasts.shown(screen)),
            what=lambda: (
                f"a notification is no longer a widget named {toasts.TOAST} (the "
                f"{toasts.RACK} holds {[type(w).__name__ for w in racks[0].query('*')]})." + MEND
            ),
        )
        (toast,) = toasts.shown(screen)
        assert racks[0] in toast.ancestors, (
            f"Textual's {toasts.TOAST} is no longer inside its {toasts.RACK} (its "
            f"ancestors: {[type(node).__name__ for node in toast.ancestors]}): moving "
            "the rack no longer moves the notifications." + MEND
        )
        shown = str(toast.render())
        assert "The title" in shown and "the message" in shown, (
            f"Textual's {toasts.TOAST} no longer shows its title and message ({shown!r}): "
            "it may not be the notification any more." + MEND
        )


async def test_place_moves_the_notifications_and_the_css_shapes_them() -> None:
    """Below the progress: from LEFT cells to the right edge, BOTTOM rows up, the title
    above one line. Beside: wider than Textual's half of the width, BOTTOM rows up."""
    app = Bare()
    async with app.run_test(size=(WIDTH, HEIGHT), notifications=True) as pilot:
        app.notify("the message", title="The title", timeout=60)
        await until(
            pilot,
            lambda: any(toast.region.area for toast in toasts.shown(app.screen)),
            what=f"no {toasts.TOAST} laid out on screen." + MEND,
        )
        (toast,) = toasts.shown(app.screen)
        assert toasts.place(app.screen, left=LEFT, bottom=BOTTOM), (
            f"toasts.place() found no {toasts.RACK} on the screen." + MEND
        )

        toasts.set_beside(app.screen, False)
        assert not toasts.are_beside(app.screen)

        def below() -> None:
            region = toast.region
            assert (region.x, region.bottom) == (LEFT, HEIGHT - BOTTOM), (
                f"after toasts.place(left={LEFT}, bottom={BOTTOM}) the notification "
                f"stands at x={region.x}, its bottom at y={region.bottom} (expected "
                f"{LEFT} and {HEIGHT - BOTTOM}): the {toasts.RACK}'s margin and width no "
                "longer place it." + MEND
            )
            # Across the rack (less its scrollbar's gutter), two rows: title and line.
            assert region.right >= WIDTH - 2 and region.height == 2, (
                f"below the progress, the notification is {region.width}x{region.height} "
                f"(expected across the width from x={LEFT}, 2 rows): toasts.CSS no longer "
                f"shapes Textual's {toasts.TOAST}." + MEND
            )

        await eventually(pilot, below)

        toasts.set_beside(app.screen, True)
        assert toasts.are_beside(app.screen)

        def beside() -> None:
            region = toast.region
            assert region.width > (WIDTH - LEFT) // 2 + 1, (
                f"beside the calculation, the notification is {region.width} cells wide, "
                f"Textual's half of the {WIDTH - LEFT} cells it has: toasts.CSS no longer "
                f"lifts the {toasts.TOAST}'s max-width." + MEND
            )
            assert region.bottom == HEIGHT - BOTTOM and region.x >= LEFT

        await eventually(pilot, beside)


def test_no_other_module_names_textuals_toasts() -> None:
    """Only progress_tui/toasts.py names ToastRack, ToastHolder, Toast or their module:
    the rest of the app goes through it (and Textual's public notify)."""
    package = Path(toasts.__file__).parent
    name = re.compile(r"\bToast(Rack|Holder)?\b|widgets\._toast")
    found = [
        f"{path.relative_to(package.parent)}:{number}"
        for path in sorted(package.rglob("*"))
        if path.suffix in (".py", ".tcss") and path.name != "toasts.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if name.search(line)
    ]
    assert not found, (
        f"Textual's toast widgets are named outside progress_tui/toasts.py, at {found}: "
        "go through progress_tui.toasts instead, so that one module knows them."
    )
