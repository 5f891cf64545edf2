"""What the UI derives from the states it has seen: pure, no Textual, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from progress_protocol.states import RUNNING_STATES, State, StateSnapshot

__all__ = ["RunView"]


@dataclass(frozen=True, slots=True)
class RunView:
    """The latest snapshot, with what earlier snapshots of the same run told.

    Attributes:
        snapshot: The latest state received.
        started_at: Wall time of the run's start, when known.
        reached: The last running state seen of this run (where a cancel hit).
    """

    snapshot: StateSnapshot
    started_at: float | None = None
    reached: State | None = None

    @classmethod
    def follow(cls, previous: RunView | None, snapshot: StateSnapshot) -> RunView:
        """The view after ``snapshot``, keeping what ``previous`` knew of the same run."""
        state, step = snapshot.state, snapshot.step_seconds
        same_run = previous is not None and previous.snapshot.calculation_id == (
            snapshot.calculation_id
        )
        started_at = previous.started_at if same_run and previous else None
        reached = previous.reached if same_run and previous else None
        if state.is_running:
            started_at = snapshot.changed_at - RUNNING_STATES.index(state) * step
            reached = state
        elif state is State.SUCCESS:
            started_at = snapshot.changed_at - len(RUNNING_STATES) * step
            reached = RUNNING_STATES[-1]
        return cls(snapshot, started_at, reached)

    @property
    def state(self) -> State:
        return self.snapshot.state

    @property
    def total_seconds(self) -> float:
        return len(RUNNING_STATES) * self.snapshot.step_seconds

    def elapsed(self, now: float) -> float | None:
        """Seconds since the start: still counting while running, fixed once over."""
        if self.started_at is None:
            return None
        end = now if self.state.is_running else self.snapshot.changed_at
        return max(0.0, min(end - self.started_at, self.total_seconds))

    def progress(self, now: float) -> float:
        """How far the run is, from 0.0 to 1.0, advancing smoothly within each step."""
        state, step = self.state, self.snapshot.step_seconds
        if state is State.SUCCESS:
            return 1.0
        if not step > 0:  # the decoder refuses such a step; never divide by it anyway
            return 0.0
        if state.is_running:
            within = min(max(now - self.snapshot.changed_at, 0.0), step)
            return (RUNNING_STATES.index(state) * step + within) / self.total_seconds
        if state is State.CANCELED and self.started_at is not None:
            return min(max((self.snapshot.changed_at - self.started_at) / self.total_seconds, 0), 1)
        return 0.0
