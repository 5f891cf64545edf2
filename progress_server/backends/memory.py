"""The in-memory backend: one calculation in this process, driven by the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable

from progress_protocol.states import DEFAULT_STEP_SECONDS, Attribution, Run, StateSnapshot

from .. import calculation
from ..calculation import (
    SYSTEM_CLOCK,
    Change,
    Clock,
    Outcome,
    Record,
    changes_of,
    new_calculation_id,
)
from ..presence import Roster
from .base import CommitListener, CountListener, LatencyListener, Listener, Unsubscribe

__all__ = ["MemoryBackend"]

logger = logging.getLogger(__name__)


class MemoryBackend:
    """Keeps the calculation's :class:`~progress_server.calculation.Record` in memory and
    moves it with the pure transitions, on the event loop.

    One timer at a time is pending: the next deadline. Cancel clears it, so no
    transition ever follows a CANCELED.

    Changes wait in one queue until they are delivered, so listeners hear them in
    order whichever path applied them (the timer, an action, a refused action).

    Args:
        step_seconds: How long each step lasts.
        clock: Where the calculation reads the time.
        new_id: Makes the id of each new calculation.
    """

    def __init__(
        self,
        *,
        step_seconds: float = DEFAULT_STEP_SECONDS,
        clock: Clock = SYSTEM_CLOCK,
        new_id: Callable[[], str] = new_calculation_id,
    ) -> None:
        self._clock = clock
        self._new_id = new_id
        self._record = calculation.initial_record(step_seconds, clock.now())
        self._listeners: list[Listener] = []
        self._count_listeners: list[CountListener] = []
        self._undelivered: deque[Change] = deque()
        self._delivery: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.on_commit: CommitListener | None = None
        #: Never called: memory is no round trip away.
        self.on_latency: LatencyListener | None = None
        #: Never called: memory cannot be out of reach.
        self.on_problem: Callable[[str | None], None] | None = None
        #: Compared with no other instance's: there is none.
        self.tokens_fingerprint: str | None = None

    @property
    def action_seconds(self) -> float:
        """An action here is answered at once."""
        return 0.0

    @property
    def problem(self) -> str | None:
        """Always None: memory cannot be out of reach."""
        return None

    def report_clients(self, count: int, roster: Roster) -> None:
        """One instance: there are no others."""
        for listener in list(self._count_listeners):
            listener(0, Counter())

    def subscribe_clients(self, listener: CountListener) -> Unsubscribe:
        self._count_listeners.append(listener)
        return lambda: (
            self._count_listeners.remove(listener) if listener in self._count_listeners else None
        )

    @property
    def record(self) -> Record:
        """The record as of the last transition (tests compare backends with it)."""
        return self._record

    async def start(self) -> None:
        """Nothing to connect to: the calculation is here."""

    async def snapshot(self) -> StateSnapshot:
        self._transition(calculation.advance)
        return self._record.snapshot

    async def history(self) -> tuple[Run, ...]:
        self._transition(calculation.advance)
        return self._record.history

    async def start_calculation(self, by: Attribution | None = None) -> StateSnapshot:
        new_id = self._new_id()
        return self._act(
            lambda record, now: calculation.start(record, now, calculation_id=new_id, by=by)
        )

    async def cancel_calculation(self, by: Attribution | None = None) -> StateSnapshot:
        return self._act(lambda record, now: calculation.cancel(record, now, by=by))

    def subscribe(self, listener: Listener) -> Unsubscribe:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def aclose(self) -> None:
        self._closed = True
        self._cancel_timer()
        if self._delivery is not None:
            self._delivery.cancel()
            self._delivery = None
        self._undelivered.clear()
        self._listeners.clear()

    def _act(self, step: Callable[[Record, float], Outcome]) -> StateSnapshot:
        outcome = self._transition(step)
        if outcome.refused is not None:
            # Catching up with the clock may have applied transitions before the
            # refusal (a cancel just after the last deadline finds SUCCESS): they are
            # announced now, before the caller can answer the refusal.
            self._deliver()
            raise outcome.refused
        return self._record.snapshot

    def _transition(self, step: Callable[[Record, float], Outcome]) -> Outcome:
        """Apply one transition; its changes are announced once the caller has resumed,
        and the timer is rearmed for the next deadline."""
        outcome = step(self._record, self._clock.now())
        self._record = outcome.record
        if outcome.changes and self.on_commit is not None:
            self.on_commit(outcome.changes)
        if outcome.changes:
            self._undelivered.extend(changes_of(outcome))
            if self._delivery is None:
                self._delivery = asyncio.get_running_loop().call_soon(self._deliver)
        self._reschedule()
        return outcome

    def _deliver(self) -> None:
        """Hand every undelivered change to every listener, oldest first."""
        if self._delivery is not None:
            self._delivery.cancel()  # when called directly, ahead of its turn
            self._delivery = None
        while self._undelivered:
            change = self._undelivered.popleft()
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:
                    logger.exception("a state listener failed on seq %d", change.snapshot.seq)

    def _reschedule(self) -> None:
        self._cancel_timer()
        deadline = calculation.next_deadline(self._record)
        if deadline is None or self._closed:
            return
        delay = max(0.0, deadline - self._clock.now())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        # The loop may wake a hair early; advance() then finds nothing due and
        # _reschedule() arms the timer again for the remaining moment.
        self._transition(calculation.advance)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
