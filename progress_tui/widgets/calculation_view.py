"""The run's progress bar, calculation id and elapsed time, moving smoothly."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Label, ProgressBar

from progress_client.display import printable

from ..run import RunView
from .spinner import Spinner

__all__ = ["CalculationView"]


class CalculationView(Widget):
    """Progress over the three steps, from ``changed_at`` and ``step_seconds``.

    Args:
        clock: Wall-clock time; tests freeze it.
        fps: How often the bar and the elapsed time move while a run goes on.
        animate: False freezes the spinner (for stable screenshots).
    """

    DEFAULT_CSS = """
    CalculationView {
        height: auto;
        padding: 0 1;
    }
    CalculationView > Horizontal {
        height: 1;
    }
    CalculationView #details {
        margin-left: 1;
        color: $text-muted;
    }
    CalculationView ProgressBar {
        margin: 1 0;
    }
    CalculationView ProgressBar Bar {
        width: 1fr;
    }
    """

    run: reactive[RunView | None] = reactive(None)
    busy: reactive[bool] = reactive(False)

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

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Spinner(animate=self.spinning)
            # The calculation id is the server's text: shown plainly, never as markup.
            yield Label(id="details", markup=False)
        yield ProgressBar(total=1.0, show_eta=False)

    def on_mount(self) -> None:
        self._ticker = self.set_interval(1 / self.fps, self._update, pause=True)
        self._update()

    def watch_run(self, run: RunView | None) -> None:
        if self._ticker is not None:
            if run is not None and run.state.is_running:
                self._ticker.resume()
            else:
                self._ticker.pause()
        self._update()

    def watch_busy(self) -> None:
        self._update()

    def _update(self) -> None:
        if not self.is_mounted:
            return
        run, now = self.run, self.clock()
        self.query_one(Spinner).active = self.busy or (run is not None and run.state.is_running)
        self.query_one(ProgressBar).update(progress=run.progress(now) if run else 0.0)
        self.query_one("#details", Label).update(self._details(run, now))

    @staticmethod
    def _details(run: RunView | None, now: float) -> Text:
        if run is None or run.snapshot.calculation_id is None:
            return Text("No calculation yet: press s to start one.")
        elapsed = run.elapsed(now)
        shown = "—" if elapsed is None else f"{elapsed:.1f} s"
        return Text(
            f"Calculation {printable(run.snapshot.calculation_id)} · elapsed {shown}"
            f" of {run.total_seconds:.1f} s"
        )
