"""The shared calculation: a pure state machine with no network code and no sleeping.

A calculation goes ``STARTING -> IN_PROGRESS -> ALMOST_DONE -> SUCCESS``, one step
each ``step_seconds``, unless it is canceled. Deadlines are computed from the start
on a monotonic clock (``start + k * step``), never from chained sleeps, so a whole
run lasts ``3 * step`` without drift however late the driver wakes up.

The machine only *tells* its driver when the next deadline is; the driver (see
:mod:`progress_server.backends.memory`) calls :meth:`Calculation.advance` at that
moment. Every public method first catches up with the clock, so an action that
arrives late sees the state the deadlines say, never a stale one.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Protocol

from progress_protocol.states import (
    DEFAULT_STEP_SECONDS,
    RUNNING_STATES,
    Attribution,
    Run,
    State,
    StateSnapshot,
)

__all__ = [
    "DEFAULT_STEP_SECONDS",
    "HISTORY_LENGTH",
    "RUNNING_STATES",
    "SYSTEM_CLOCK",
    "ActionRefused",
    "AlreadyRunning",
    "Attribution",
    "Calculation",
    "Clock",
    "NotRunning",
    "Run",
    "State",
    "StateSnapshot",
    "SystemClock",
]

#: How many finished calculations the history keeps.
HISTORY_LENGTH = 20


class Clock(Protocol):
    """Where the calculation reads the time: tests pass a clock they move by hand."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The real clock: ``time.monotonic`` for deadlines, ``time.time`` for timestamps."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


SYSTEM_CLOCK = SystemClock()


class ActionRefused(Exception):
    """An action that the current state does not allow.

    The action changed nothing, but catching up with the clock may have: a cancel
    that arrives just after the last deadline first applies SUCCESS, then is refused.
    Those transitions happened and must be announced like any other.

    Attributes:
        code: The protocol's error code for it.
        snapshot: The state that refused the action.
        changes: The transitions that came due before the refusal, oldest first.
    """

    code = "refused"

    def __init__(
        self,
        message: str,
        *,
        snapshot: StateSnapshot,
        changes: tuple[StateSnapshot, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.snapshot = snapshot
        self.changes = changes


class AlreadyRunning(ActionRefused):
    code = "already_running"


class NotRunning(ActionRefused):
    code = "not_running"


def new_calculation_id() -> str:
    return uuid.uuid4().hex[:12]


class Calculation:
    """The state machine of the one shared calculation.

    Args:
        step_seconds: How long each of the three steps lasts; must be > 0.
        clock: Where the time comes from.
        new_id: Makes the id of each new calculation.

    Raises:
        ValueError: If ``step_seconds`` is not positive.
    """

    def __init__(
        self,
        *,
        step_seconds: float = DEFAULT_STEP_SECONDS,
        clock: Clock = SYSTEM_CLOCK,
        new_id: Callable[[], str] = new_calculation_id,
    ) -> None:
        if not step_seconds > 0:
            raise ValueError(f"step_seconds must be > 0, got {step_seconds!r}")
        self.step_seconds = float(step_seconds)
        self._clock = clock
        self._new_id = new_id
        # Monotonic and wall-clock time of the current calculation's start.
        self._started_mono = 0.0
        self._started_wall = 0.0
        self._started_by: Attribution | None = None
        self._history: deque[Run] = deque(maxlen=HISTORY_LENGTH)
        self._snapshot = StateSnapshot(
            state=State.IDLE,
            calculation_id=None,
            seq=0,
            changed_at=clock.time(),
            step_seconds=self.step_seconds,
        )

    @property
    def snapshot(self) -> StateSnapshot:
        """The state as of the last call; call :meth:`advance` first to catch up."""
        return self._snapshot

    @property
    def history(self) -> tuple[Run, ...]:
        """The last :data:`HISTORY_LENGTH` finished calculations, newest first."""
        return tuple(reversed(self._history))

    def next_deadline(self) -> float | None:
        """The monotonic time of the next transition, or None when nothing runs."""
        state = self._snapshot.state
        if not state.is_running:
            return None
        step_index = RUNNING_STATES.index(state) + 1
        return self._started_mono + step_index * self.step_seconds

    def advance(self) -> list[StateSnapshot]:
        """Apply every transition whose deadline has passed.

        Returns:
            The new snapshots, oldest first; empty when nothing was due.
        """
        changes: list[StateSnapshot] = []
        now = self._clock.monotonic()
        while (deadline := self.next_deadline()) is not None and now >= deadline:
            index = RUNNING_STATES.index(self._snapshot.state) + 1
            following = RUNNING_STATES[index] if index < len(RUNNING_STATES) else State.SUCCESS
            # The timestamp is the deadline's, so it does not depend on how late we woke.
            changed_at = self._started_wall + index * self.step_seconds
            changes.append(self._enter(following, changed_at=changed_at))
        return changes

    def start(self, by: Attribution | None = None) -> list[StateSnapshot]:
        """Start a new calculation.

        Args:
            by: Who asked, for the STARTING state and the history.

        Returns:
            The new snapshots, oldest first: the transitions that were due, then STARTING.

        Raises:
            AlreadyRunning: If a calculation runs; only the transitions that came
                due were applied, and the exception carries them.
        """
        changes = self.advance()
        if self._snapshot.state.is_running:
            raise AlreadyRunning(
                f"A calculation is already running ({self._snapshot.state}); "
                "cancel it or wait for it to finish.",
                snapshot=self._snapshot,
                changes=tuple(changes),
            )
        self._started_mono = self._clock.monotonic()
        self._started_wall = self._clock.time()
        self._started_by = by
        changes.append(
            self._enter(
                State.STARTING,
                calculation_id=self._new_id(),
                changed_at=self._started_wall,
                by=by,
            )
        )
        return changes

    def cancel(self, by: Attribution | None = None) -> list[StateSnapshot]:
        """Cancel the running calculation; no transition follows CANCELED.

        Args:
            by: Who asked, for the CANCELED state and the history.

        Returns:
            The new snapshots, oldest first: the transitions that were due, then CANCELED.

        Raises:
            NotRunning: If no calculation runs; only the transitions that came due
                were applied, and the exception carries them.
        """
        changes = self.advance()
        if not self._snapshot.state.is_running:
            raise NotRunning(
                f"There is no running calculation to cancel (the state is {self._snapshot.state}).",
                snapshot=self._snapshot,
                changes=tuple(changes),
            )
        interrupted = self._snapshot.state
        changes.append(self._enter(State.CANCELED, canceled_during=interrupted, by=by))
        return changes

    def _enter(
        self,
        state: State,
        *,
        calculation_id: str | None = None,
        changed_at: float | None = None,
        canceled_during: State | None = None,
        by: Attribution | None = None,
    ) -> StateSnapshot:
        """Make ``state`` current; a new calculation_id starts a new calculation."""
        previous = self._snapshot
        self._snapshot = StateSnapshot(
            state=state,
            calculation_id=calculation_id or previous.calculation_id,
            seq=previous.seq + 1,
            changed_at=self._clock.time() if changed_at is None else changed_at,
            step_seconds=self.step_seconds,
            started_at=self._started_wall,
            canceled_during=canceled_during,
            by=by,
        )
        if state.is_final:
            self._history.append(self._run(self._snapshot))
        return self._snapshot

    def _run(self, ended: StateSnapshot) -> Run:
        assert ended.calculation_id is not None
        return Run(
            calculation_id=ended.calculation_id,
            started_at=self._started_wall,
            ended_at=ended.changed_at,
            outcome=ended.state,
            canceled_during=ended.canceled_during,
            started_by=self._started_by,
            canceled_by=ended.by if ended.state is State.CANCELED else None,
        )
