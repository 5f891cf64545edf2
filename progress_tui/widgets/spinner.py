"""A spinner: animates while active, stands still otherwise. Reusable on its own."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget

__all__ = ["Spinner"]


class Spinner(Widget):
    """One cell that spins while :attr:`active` is True.

    Args:
        fps: Frames per second while active.
        animate: False keeps the first frame (for stable screenshots).
    """

    DEFAULT_CSS = """
    Spinner {
        width: 1;
        height: 1;
        color: $text-primary;
    }
    Spinner.-idle {
        color: $text-muted;
    }
    """

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    IDLE = "·"

    active: reactive[bool] = reactive(False)
    frame: reactive[int] = reactive(0)

    def __init__(
        self,
        *,
        fps: float = 12.0,
        animate: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.fps = fps
        self.animate_frames = animate
        self._timer: Timer | None = None

    def on_mount(self) -> None:
        self._timer = self.set_interval(1 / self.fps, self._next_frame, pause=True)
        self.watch_active(self.active)

    def watch_active(self, active: bool) -> None:
        self.set_class(not active, "-idle")
        if self._timer is None:
            return
        if active and self.animate_frames:
            self._timer.resume()
        else:
            self._timer.pause()

    def _next_frame(self) -> None:
        self.frame = (self.frame + 1) % len(self.FRAMES)

    def render(self) -> Text:
        return Text(self.FRAMES[self.frame] if self.active else self.IDLE)
