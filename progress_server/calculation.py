"""The shared calculation: pure transitions over a record, with no I/O and no sleeping.

A calculation goes ``STARTING -> IN_PROGRESS -> ALMOST_DONE -> SUCCESS``, one step
each ``step_seconds``, unless it is canceled. The rules are written once, here, as
functions of a :class:`Record` and the time: ``advance``, ``start`` and ``cancel``
each return an :class:`Outcome` (the new record, the changes to announce, and the
refusal if the action was refused); :func:`changes_of` turns an outcome into the
:class:`Change` objects a backend announces. A record is plain frozen data that
serializes to JSON, so it can live in this process (:mod:`.backends.memory`) or in Redis and be
moved by the same functions from any process.

Deadlines are computed from the start on a clock every driver shares
(``started_at + k * step``), never from chained sleeps, so a whole run lasts
``3 * step`` without drift however late a driver wakes up, and any driver computes
the same deadlines. Every transition first catches up with the clock, so an action
that arrives late sees the state the deadlines say, never a stale one.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

from progress_protocol.messages import (
    ErrorCode,
    History,
    ProtocolError,
    StateMessage,
    decode_server_message,
    to_dict,
)
from progress_protocol.states import (
    RUNNING_STATES,
    Attribution,
    Run,
    State,
    StateSnapshot,
)

__all__ = [
    "HISTORY_LENGTH",
    "SYSTEM_CLOCK",
    "ActionRefused",
    "AlreadyRunning",
    "Change",
    "Clock",
    "HandClock",
    "NotRunning",
    "Outcome",
    "Record",
    "SystemClock",
    "advance",
    "cancel",
    "changes_of",
    "initial_record",
    "new_calculation_id",
    "next_deadline",
    "snapshot_from_json",
    "snapshot_to_json",
    "start",
]

#: How many finished calculations the history keeps.
HISTORY_LENGTH = 20


class Clock(Protocol):
    """The time every driver of a calculation agrees on, in Unix seconds.

    Tests pass a clock they move by hand; the Redis backend reads Redis's own.
    """

    def now(self) -> float: ...


class SystemClock:
    """This process's clock: Unix time, but moving like ``time.monotonic``.

    It is anchored to the wall clock once, so the timestamps read as dates, while a
    wall-clock step (NTP, a suspended laptop) never moves a deadline.
    """

    def __init__(self) -> None:
        self._anchor = time.time() - time.monotonic()

    def now(self) -> float:
        return self._anchor + time.monotonic()


SYSTEM_CLOCK = SystemClock()


class HandClock:
    """A clock that moves only when told to: for tests, and for the pictures of the
    docs (docs/capture.py), where a state lasts as long as it is looked at."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self._now = now

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


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

    code: ClassVar[ErrorCode]

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
    code = ErrorCode.ALREADY_RUNNING


class NotRunning(ActionRefused):
    code = ErrorCode.NOT_RUNNING


def new_calculation_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True, slots=True)
class Record:
    """Everything the shared calculation is: what a backend stores.

    Attributes:
        snapshot: The current state; its ``started_at`` is the clock's time of the
            current calculation's start, from which every deadline follows.
        history: The last finished calculations, newest first.
    """

    snapshot: StateSnapshot
    history: tuple[Run, ...] = ()

    @property
    def seq(self) -> int:
        return self.snapshot.seq

    def to_json(self) -> dict[str, Any]:
        """A JSON object, made of the protocol's own objects."""
        return {
            "state": to_dict(StateMessage(self.snapshot)),
            "history": to_dict(History(self.history)),
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Record:
        """Read what :meth:`to_json` wrote, through the protocol's bounded decoder.

        Raises:
            ValueError: If it is not a record.
        """
        try:
            state = decode_server_message(json.dumps(payload["state"]))
            history = decode_server_message(json.dumps(payload["history"]))
        except (KeyError, TypeError, ProtocolError) as exc:
            raise ValueError(f"not a calculation record: {exc}") from None
        if not isinstance(state, StateMessage) or not isinstance(history, History):
            raise ValueError("not a calculation record")
        return cls(state.snapshot, history.runs)


def snapshot_to_json(snapshot: StateSnapshot) -> dict[str, Any]:
    """A snapshot as the protocol's ``state`` object."""
    return to_dict(StateMessage(snapshot))


def snapshot_from_json(payload: Any) -> StateSnapshot:
    """Read a ``state`` object through the protocol's bounded decoder.

    Raises:
        ValueError: If it is not one.
    """
    try:
        message = decode_server_message(json.dumps(payload))
    except (TypeError, ProtocolError) as exc:
        raise ValueError(f"not a state: {exc}") from None
    if not isinstance(message, StateMessage):
        raise ValueError("not a state")
    return message.snapshot


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one transition did.

    Attributes:
        record: The record afterwards, to store.
        changes: The new snapshots, oldest first, to announce: even a refused action
            can have applied transitions that came due before it.
        refused: Why the action was refused, or None.
    """

    record: Record
    changes: tuple[StateSnapshot, ...] = ()
    refused: ActionRefused | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One change of the calculation, as listeners hear it.

    Attributes:
        snapshot: The new state.
        history: The history after it, newest first, when this change ended a
            calculation (SUCCESS or CANCELED); None otherwise.
    """

    snapshot: StateSnapshot
    history: tuple[Run, ...] | None = None


def changes_of(outcome: Outcome) -> list[Change]:
    """The changes an outcome announces; the one that ended a calculation carries the
    history as it was right after it (a start in the same outcome does not touch it)."""
    history = outcome.record.history
    ended = sum(1 for snapshot in outcome.changes if snapshot.state.is_final)
    changes = []
    for snapshot in outcome.changes:
        runs: tuple[Run, ...] | None = None
        if snapshot.state.is_final:
            ended -= 1
            runs = history[ended:]  # newest first: without the runs that ended after it
        changes.append(Change(snapshot, runs))
    return changes


def initial_record(step_seconds: float, now: float) -> Record:
    """A calculation that never ran: IDLE, seq 0.

    Raises:
        ValueError: If ``step_seconds`` is not positive.
    """
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be > 0, got {step_seconds!r}")
    return Record(
        StateSnapshot(
            state=State.IDLE,
            calculation_id=None,
            seq=0,
            changed_at=now,
            step_seconds=float(step_seconds),
        )
    )


def next_deadline(record: Record) -> float | None:
    """When the next transition is due on the shared clock, or None when nothing runs."""
    snapshot = record.snapshot
    if not snapshot.state.is_running or snapshot.started_at is None:
        return None
    step_index = RUNNING_STATES.index(snapshot.state) + 1
    return snapshot.started_at + step_index * snapshot.step_seconds


def advance(record: Record, now: float) -> Outcome:
    """Apply every transition whose deadline has passed by ``now``."""
    changes: list[StateSnapshot] = []
    while (deadline := next_deadline(record)) is not None and now >= deadline:
        index = RUNNING_STATES.index(record.snapshot.state) + 1
        following = RUNNING_STATES[index] if index < len(RUNNING_STATES) else State.SUCCESS
        # The timestamp is the deadline's, so it does not depend on how late we woke.
        record = _enter(record, following, changed_at=deadline)
        changes.append(record.snapshot)
    return Outcome(record, tuple(changes))


def start(
    record: Record, now: float, *, calculation_id: str, by: Attribution | None = None
) -> Outcome:
    """Start a new calculation, once the transitions that came due are applied.

    Args:
        record: The calculation as stored.
        now: The shared clock's time.
        calculation_id: The new calculation's id.
        by: Who asked, for the STARTING state and the history.

    Returns:
        The transitions that were due then STARTING; or, if a calculation runs, the
        transitions that were due and an :class:`AlreadyRunning` refusal.
    """
    caught_up = advance(record, now)
    record = caught_up.record
    if record.snapshot.state.is_running:
        refusal = AlreadyRunning(
            f"A calculation is already running ({record.snapshot.state}); "
            "cancel it or wait for it to finish.",
            snapshot=record.snapshot,
            changes=caught_up.changes,
        )
        return replace(caught_up, refused=refusal)
    record = _enter(
        record,
        State.STARTING,
        calculation_id=calculation_id,
        changed_at=now,
        started_at=now,
        by=by,
    )
    return Outcome(record, (*caught_up.changes, record.snapshot))


def cancel(record: Record, now: float, *, by: Attribution | None = None) -> Outcome:
    """Cancel the running calculation, once the transitions that came due are applied;
    no transition follows CANCELED.

    Returns:
        The transitions that were due then CANCELED; or, if none runs, the transitions
        that were due and a :class:`NotRunning` refusal.
    """
    caught_up = advance(record, now)
    record = caught_up.record
    if not record.snapshot.state.is_running:
        refusal = NotRunning(
            f"There is no running calculation to cancel (the state is {record.snapshot.state}).",
            snapshot=record.snapshot,
            changes=caught_up.changes,
        )
        return replace(caught_up, refused=refusal)
    interrupted = record.snapshot.state
    record = _enter(record, State.CANCELED, changed_at=now, canceled_during=interrupted, by=by)
    return Outcome(record, (*caught_up.changes, record.snapshot))


def _enter(
    record: Record,
    state: State,
    *,
    changed_at: float,
    calculation_id: str | None = None,
    started_at: float | None = None,
    canceled_during: State | None = None,
    by: Attribution | None = None,
) -> Record:
    """The record with ``state`` current; a calculation that ends joins the history."""
    previous = record.snapshot
    starting = state is State.STARTING
    snapshot = StateSnapshot(
        state=state,
        calculation_id=calculation_id or previous.calculation_id,
        seq=previous.seq + 1,
        changed_at=changed_at,
        step_seconds=previous.step_seconds,
        started_at=started_at if started_at is not None else previous.started_at,
        canceled_during=canceled_during,
        by=by,
        started_by=by if starting else previous.started_by,
    )
    history = record.history
    if state.is_final:
        assert snapshot.calculation_id is not None and snapshot.started_at is not None
        run = Run(
            calculation_id=snapshot.calculation_id,
            started_at=snapshot.started_at,
            ended_at=changed_at,
            outcome=state,
            canceled_during=canceled_during,
            started_by=snapshot.started_by,
            canceled_by=by if state is State.CANCELED else None,
        )
        history = (run, *history)[:HISTORY_LENGTH]
    return Record(snapshot, history)
