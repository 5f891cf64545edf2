"""The spinner widget on its own, in a minimal app."""

from __future__ import annotations

from textual.app import App, ComposeResult

from progress_tui.widgets.spinner import Spinner
from tests.helpers import TIMEOUT


class SpinnerApp(App[None]):
    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        self.kwargs = kwargs

    def compose(self) -> ComposeResult:
        yield Spinner(**self.kwargs)  # type: ignore[arg-type]


async def test_frames_advance_while_active_and_stop_when_inactive() -> None:
    """Active: the frame changes by itself, again and again. Inactive: it stands still."""
    app = SpinnerApp()
    async with app.run_test() as pilot:
        spinner = app.query_one(Spinner)
        assert spinner.fps >= 8
        assert str(spinner.render()) == Spinner.IDLE
        spinner.active = True
        seen = {spinner.frame}
        for _ in range(int(TIMEOUT / 0.02)):
            await pilot.pause(0.02)
            seen.add(spinner.frame)
            if len(seen) >= 3:
                break
        assert len(seen) >= 3, "the spinner did not keep turning"
        assert str(spinner.render()) in Spinner.FRAMES

        spinner.active = False
        stopped = spinner.frame
        await pilot.pause(5 / spinner.fps)
        assert spinner.frame == stopped
        assert str(spinner.render()) == Spinner.IDLE
        assert spinner.has_class("-idle")


async def test_a_frozen_spinner_shows_one_frame() -> None:
    """animate=False: active shows the first frame and never moves (for screenshots)."""
    app = SpinnerApp(animate=False)
    async with app.run_test() as pilot:
        spinner = app.query_one(Spinner)
        spinner.active = True
        await pilot.pause(5 / spinner.fps)
        assert spinner.frame == 0
        assert str(spinner.render()) == Spinner.FRAMES[0]
