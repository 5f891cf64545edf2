"""The in-memory backend: one calculation in this process, driven by the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from ..calculation import (
    DEFAULT_STEP_SECONDS,
    SYSTEM_CLOCK,
    ActionRefused,
    Attribution,
    Calculation,
    Clock,
    Run,
    StateSnapshot,
)
from .base import Change, Listener, Unsubscribe

__all__ = ["MemoryBackend"]

logger = logging.getLogger(__name__)


class MemoryBackend:
    """Runs the :class:`~progress_server.calculation.Calculation` on the event loop.

    One timer at a time is pending: the next deadline. Cancel clears it, so no
    transition ever follows a CANCELED.

    Changes wait in one queue until they are delivered, so listeners hear them in
    order whichever path applied them (the timer, an action, a refused action).

    Args:
        step_seconds: How long each step lasts.
        clock: Where the calculation reads the time.
    """

    def __init__(
        self, *, step_seconds: float = DEFAULT_STEP_SECONDS, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._calculation = Calculation(step_seconds=step_seconds, clock=clock)
        self._clock = clock
        self._listeners: list[Listener] = []
        self._undelivered: deque[Change] = deque()
        self._delivery: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def step_seconds(self) -> float:
        return self._calculation.step_seconds

    async def snapshot(self) -> StateSnapshot:
        self._apply(self._calculation.advance())
        return self._calculation.snapshot

    async def history(self) -> tuple[Run, ...]:
        self._apply(self._calculation.advance())
        return self._calculation.history

    async def start(self, by: Attribution | None = None) -> StateSnapshot:
        return self._perform(lambda: self._calculation.start(by))

    async def cancel(self, by: Attribution | None = None) -> StateSnapshot:
        return self._perform(lambda: self._calculation.cancel(by))

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

    def _perform(self, action: Callable[[], list[StateSnapshot]]) -> StateSnapshot:
        try:
            changes = action()
        except ActionRefused as refused:
            # Catching up with the clock may have applied transitions before the
            # refusal (a cancel just after the last deadline finds SUCCESS): they are
            # announced now, before the caller can answer the refusal.
            self._undelivered.extend(self._changes(list(refused.changes)))
            self._deliver()
            self._reschedule()
            raise
        return self._apply(changes)

    def _apply(self, changes: list[StateSnapshot]) -> StateSnapshot:
        """Announce the changes once the caller has resumed, then rearm the timer."""
        if changes:
            self._undelivered.extend(self._changes(changes))
            if self._delivery is None:
                self._delivery = asyncio.get_running_loop().call_soon(self._deliver)
        self._reschedule()
        return self._calculation.snapshot

    def _changes(self, snapshots: list[StateSnapshot]) -> list[Change]:
        """The changes of these snapshots; the one that ended a calculation carries the
        history as it was right after it (a later start does not change it)."""
        history = self._calculation.history
        ended = [s for s in snapshots if s.state.is_final]
        changes = []
        for snapshot in snapshots:
            runs: tuple[Run, ...] | None = None
            if snapshot.state.is_final:
                # Newest first: drop the runs of calculations that ended after this one.
                later = len(ended) - 1 - ended.index(snapshot)
                runs = history[later:]
            changes.append(Change(snapshot, runs))
        return changes

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
        deadline = self._calculation.next_deadline()
        if deadline is None or self._closed:
            return
        delay = max(0.0, deadline - self._clock.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        # The loop may wake a hair early; advance() then finds nothing due and
        # _reschedule() arms the timer again for the remaining moment.
        self._apply(self._calculation.advance())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
