"""The calculation's id, progress bar, elapsed and remaining time, and who asked."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Label, ProgressBar

from progress_client.wording import printable

from ..panel import PanelView
from ..status import ConnectionInfo
from .spinner import Spinner

__all__ = ["CalculationView"]


class CalculationView(Widget):
    """Everything :class:`PanelView` says of the latest snapshot, moving smoothly.

    While the connection is lost (``frozen_at`` is set) the clock stands at that
    moment and the spinner stops: the screen shows the last thing it knew, not a
    guess.

    Args:
        clock: Wall-clock time; tests freeze it.
        fps: How often the bar and the times move while a calculation runs.
        animate: False freezes the spinner and the ticker: the panel is drawn on each
            change, and on :meth:`tick` (for screenshots and tests with a frozen clock).
    """

    DEFAULT_CSS = """
    CalculationView {
        height: auto;
    }
    CalculationView > Horizontal {
        height: auto;
    }
    CalculationView #details {
        width: 1fr;
        margin-left: 1;
    }
    CalculationView #timing, CalculationView #who {
        width: 1fr;
        color: $text-muted;
    }
    CalculationView Label.-empty {
        display: none;
    }
    CalculationView ProgressBar {
        width: 1fr;
    }
    CalculationView ProgressBar Bar {
        width: 1fr;
    }
    /* The done part in the one colour of a run; the rest a quiet track. */
    CalculationView Bar > .bar--bar {
        color: $primary;
        background: $foreground 40%;
    }
    CalculationView Bar > .bar--complete {
        color: $success;
    }
    /* In the terminal's colours, no track: the done part on the terminal's background. */
    CalculationView Bar:ansi > .bar--bar, CalculationView Bar:ansi > .bar--complete {
        color: $text-primary;
        background: ansi_default;
    }
    CalculationView Bar:ansi > .bar--complete {
        color: $text-success;
    }
    """

    view: reactive[PanelView | None] = reactive(None)
    connection: reactive[ConnectionInfo | None] = reactive(None)
    #: This client's ids (one per connection it had): its own actions read "(you)".
    mine: reactive[tuple[str, ...]] = reactive(())
    #: The wall time the connection was lost at, while it is; None while connected.
    frozen_at: reactive[float | None] = reactive(None)
    #: An action of this client waits for its answer.
    busy: reactive[bool] = reactive(False)
    #: Whether this client may start a calculation (a viewer may not).
    may_start: reactive[bool] = reactive(True)

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        fps: float = 15.0,
        animate: bool = True,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.fps = fps
        self.spinning = animate
        self._ticker: Timer | None = None
        self._shown: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Horizontal(classes="optional"):
            yield Spinner(animate=self.spinning)
            # Server text (the id, names) is shown plainly, never as markup.
            yield Label(id="details", markup=False)
        yield ProgressBar(total=1.0, show_eta=False)
        yield Label(id="timing", markup=False)
        yield Label(id="who", markup=False, classes="optional")

    def on_mount(self) -> None:
        self._ticker = self.set_interval(1 / self.fps, self.tick, pause=True)
        self.tick()

    @property
    def moving(self) -> bool:
        """A calculation runs and the connection is live: the bar and the times move."""
        return self.view is not None and self.view.state.is_running and self.frozen_at is None

    def now(self) -> float:
        """The time the panel shows: the clock, or the moment the connection was lost."""
        return self.frozen_at if self.frozen_at is not None else self.clock()

    def watch_view(self) -> None:
        self._follow()

    def watch_frozen_at(self) -> None:
        self._follow()

    def watch_connection(self) -> None:
        self.tick()

    def watch_mine(self) -> None:
        self.tick()

    def watch_busy(self) -> None:
        self.tick()

    def watch_may_start(self) -> None:
        self.tick()

    def _follow(self) -> None:
        if self._ticker is not None:
            if self.moving and self.spinning:
                self._ticker.resume()
            else:
                self._ticker.pause()
        self.tick()

    def tick(self) -> None:
        """Draw the panel at :meth:`now`; the ticker calls it while a calculation runs."""
        if not self.is_mounted:
            return
        view, now = self.view, self.now()
        live = self.frozen_at is None
        self.query_one(Spinner).active = live and (self.busy or self.moving)
        self.query_one(ProgressBar).update(progress=view.progress(now) if view else 0.0)
        self._show("#details", self.details())
        self._show("#timing", view.timing(now) if view else "")
        self._show("#who", view.attribution(self.mine) if view else "")

    def _show(self, selector: str, text: str) -> None:
        """One line, redrawn only when it changes; it takes no room while empty."""
        if self._shown.get(selector) == text:
            return
        self._shown[selector] = text
        label = self.query_one(selector, Label)
        label.update(Content(text))
        # A class, not display: the app's stylesheet may hide the line too.
        label.set_class(not text, "-empty")

    def details(self) -> str:
        """The calculation's id, or what stands in its place."""
        view, info = self.view, self.connection
        stopped = info is not None and info.stopped
        connected = info is not None and info.connected
        if view is None:
            if stopped and info is not None:
                why = printable(info.error or "").rstrip(".")
                return f"Stopped: {why}. Press r to try again."
            if info is not None and info.error:
                return f"Not connected yet: {printable(info.error).rstrip('.')}."
            return "Waiting for the server's state…"
        if view.snapshot.calculation_id is None:
            if connected:
                if not self.may_start:
                    return "No calculation yet: an operator can start one."
                return "No calculation yet: press s to start one."
            if stopped:
                return "No calculation yet. Not connected: press r to try again."
            return "No calculation yet."
        return f"Calculation {printable(view.snapshot.calculation_id)}"
