"""What the calculation panel shows, derived from the latest snapshot: pure, no Textual.

Nothing here remembers an earlier snapshot. A client that watched a whole run and one
that joined a moment ago hold the same latest snapshot (and the same history), so they
draw the same panel: the start time, the steps done, the step a cancel interrupted and
who started it all travel in every ``state`` message (``started_at``,
``canceled_during``, ``by``, ``started_by``); with an older server that sends no
``started_by``, who started a finished calculation is in the history.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from progress_client.wording import canceled, duration, printable, started
from progress_protocol.states import RUNNING_STATES, Attribution, Run, State, StateSnapshot

__all__ = ["Mark", "PanelView", "short_id"]


class Mark(enum.Enum):
    """How one step of a calculation stands."""

    DONE = "✔"
    CURRENT = "▶"
    INTERRUPTED = "✘"
    PENDING = "·"


@dataclass(frozen=True, slots=True)
class PanelView:
    """One snapshot, read for the calculation panel: its state banner, progress, times,
    steps and who asked (the widgets draw from it, and store nothing of their own).

    Attributes:
        snapshot: The latest state the server sent.
        started_by: Who started its calculation: the state's ``started_by``; from an
            older server, ``by`` in STARTING or the history's entry once it is over.
    """

    snapshot: StateSnapshot
    started_by: Attribution | None = None

    @classmethod
    def of(cls, snapshot: StateSnapshot, history: Iterable[Run] = ()) -> PanelView:
        """The view of ``snapshot``; ``history`` tells who started a finished calculation."""
        started_by = snapshot.started_by
        if started_by is not None or snapshot.state is State.IDLE:
            pass
        elif snapshot.state is State.STARTING:
            started_by = snapshot.by
        elif snapshot.state.is_final:
            for run in history:
                if run.calculation_id == snapshot.calculation_id:
                    started_by = run.started_by
                    break
        return cls(snapshot, started_by)

    @property
    def state(self) -> State:
        return self.snapshot.state

    @property
    def step_seconds(self) -> float:
        return self.snapshot.step_seconds

    @property
    def total_seconds(self) -> float:
        return len(RUNNING_STATES) * self.snapshot.step_seconds

    @property
    def started_at(self) -> float | None:
        """The calculation's start; a server older than ``started_at`` still lets it be
        worked out while running or after SUCCESS (every step lasts ``step_seconds``)."""
        snapshot = self.snapshot
        if snapshot.calculation_id is None or snapshot.state is State.IDLE:
            return None
        if snapshot.started_at is not None:
            return snapshot.started_at
        if snapshot.state.is_running:
            return snapshot.changed_at - RUNNING_STATES.index(snapshot.state) * self.step_seconds
        if snapshot.state is State.SUCCESS:
            return snapshot.changed_at - self.total_seconds
        return None

    @property
    def canceled_by(self) -> Attribution | None:
        return self.snapshot.by if self.state is State.CANCELED else None

    def elapsed(self, now: float) -> float | None:
        """Seconds since the start: counting while running, fixed once over.

        While running, it stops at the end of the current step: a state message that
        comes late never shows more time than the step has.
        """
        started_at = self.started_at
        if started_at is None:
            return None
        state, step = self.state, self.step_seconds
        if state.is_running:
            end_of_step = (RUNNING_STATES.index(state) + 1) * step
            return min(max(now - started_at, 0.0), end_of_step)
        return min(max(self.snapshot.changed_at - started_at, 0.0), self.total_seconds)

    def remaining(self, now: float) -> float | None:
        """Seconds left while running; None otherwise."""
        elapsed = self.elapsed(now)
        if elapsed is None or not self.state.is_running:
            return None
        return max(self.total_seconds - elapsed, 0.0)

    def progress(self, now: float) -> float:
        """How far the calculation went, from 0.0 to 1.0."""
        if self.state is State.SUCCESS:
            return 1.0
        elapsed = self.elapsed(now)
        total = self.total_seconds
        if elapsed is None or not total > 0:  # the decoder refuses such a step anyway
            return 0.0
        return min(max(elapsed / total, 0.0), 1.0)

    def marks(self) -> tuple[Mark, ...]:
        """One mark per running step, then one for the outcome (SUCCESS or CANCELED)."""
        state = self.state
        if state is State.SUCCESS:
            return (Mark.DONE,) * (len(RUNNING_STATES) + 1)
        if state.is_running:
            current = RUNNING_STATES.index(state)
        elif state is State.CANCELED and self.snapshot.canceled_during in RUNNING_STATES:
            current = RUNNING_STATES.index(self.snapshot.canceled_during)
        elif state is State.CANCELED:  # a server older than canceled_during
            return (*(Mark.PENDING,) * len(RUNNING_STATES), Mark.INTERRUPTED)
        else:
            return (Mark.PENDING,) * (len(RUNNING_STATES) + 1)
        here = Mark.CURRENT if state.is_running else Mark.INTERRUPTED
        steps = tuple(
            Mark.DONE if index < current else here if index == current else Mark.PENDING
            for index in range(len(RUNNING_STATES))
        )
        return (*steps, Mark.INTERRUPTED if state is State.CANCELED else Mark.PENDING)

    def timing(self, now: float) -> str:
        """ "2.1 s elapsed, 3.9 s left", "done in 6.0 s", "canceled after 3.2 s of 6.0 s";
        empty before any calculation."""
        elapsed = self.elapsed(now)
        if elapsed is None:
            return ""
        if self.state.is_running:
            left = self.remaining(now) or 0.0
            return f"{duration(elapsed)} elapsed, {duration(left)} left"
        if self.state is State.SUCCESS:
            return f"done in {duration(elapsed)}"
        return f"canceled after {duration(elapsed)} of {duration(self.total_seconds)}"

    def attribution(self, mine: Collection[str] = ()) -> str:
        """ "started by alice@laptop", "canceled by bob@desk during IN_PROGRESS".

        Args:
            mine: This client's ids (one per connection it had): its own actions read
                "(you)" after its name.
        """
        parts = []
        if self.started_by is not None:
            parts.append(started(self.started_by, mine))
        if self.state is State.CANCELED:
            parts.append(canceled(self.canceled_by, self.snapshot.canceled_during, mine))
        return " · ".join(parts)


def short_id(calculation_id: str) -> str:
    """The first characters of an id, enough to tell calculations apart in a sentence."""
    text = printable(calculation_id)
    return text if len(text) <= 4 else f"{text[:4]}…"
