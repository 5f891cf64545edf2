"""The pure state machine, driven by a hand-moved clock: no sockets, no waiting."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from progress_protocol.states import DEFAULT_STEP_SECONDS, Attribution, Run, State, StateSnapshot
from progress_server import calculation as rules
from progress_server.calculation import (
    SYSTEM_CLOCK,
    AlreadyRunning,
    Clock,
    NotRunning,
    Outcome,
    new_calculation_id,
)
from tests.helpers import FakeClock

STEP = 2.0


class Calculation:
    """One calculation kept in memory: a record, a clock and the pure transitions of
    :mod:`progress_server.calculation`, which these tests drive through it.

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
        self._clock = clock
        self._new_id = new_id
        self.record = rules.initial_record(step_seconds, clock.now())

    @property
    def step_seconds(self) -> float:
        return self.record.snapshot.step_seconds

    @property
    def snapshot(self) -> StateSnapshot:
        """The state as of the last call; call :meth:`advance` first to catch up."""
        return self.record.snapshot

    @property
    def history(self) -> tuple[Run, ...]:
        """The last :data:`HISTORY_LENGTH` finished calculations, newest first."""
        return self.record.history

    def next_deadline(self) -> float | None:
        """The clock's time of the next transition, or None when nothing runs."""
        return rules.next_deadline(self.record)

    def advance(self) -> list[StateSnapshot]:
        """Apply every transition whose deadline has passed; returns them, oldest first."""
        return self._apply(rules.advance(self.record, self._clock.now()))

    def start(self, by: Attribution | None = None) -> list[StateSnapshot]:
        """Start a new calculation; returns the due transitions, then STARTING.

        Raises:
            AlreadyRunning: If a calculation runs; only the transitions that came
                due were applied, and the exception carries them.
        """
        return self._apply(
            rules.start(self.record, self._clock.now(), calculation_id=self._new_id(), by=by)
        )

    def cancel(self, by: Attribution | None = None) -> list[StateSnapshot]:
        """Cancel the running calculation; returns the due transitions, then CANCELED.

        Raises:
            NotRunning: If no calculation runs; only the transitions that came due
                were applied, and the exception carries them.
        """
        return self._apply(rules.cancel(self.record, self._clock.now(), by=by))

    def _apply(self, outcome: Outcome) -> list[StateSnapshot]:
        self.record = outcome.record
        if outcome.refused is not None:
            raise outcome.refused
        return list(outcome.changes)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def calculation(clock: FakeClock) -> Calculation:
    ids = (f"calc-{n}" for n in itertools.count(1))
    return Calculation(step_seconds=STEP, clock=clock, new_id=lambda: next(ids))


def states(changes: list) -> list[State]:
    return [change.state for change in changes]


def test_starts_idle_with_no_calculation(calculation: Calculation, clock: FakeClock) -> None:
    """A new machine is IDLE, seq 0, with no id and no deadline."""
    snapshot = calculation.snapshot
    assert snapshot.state is State.IDLE
    assert snapshot.calculation_id is None
    assert snapshot.seq == 0
    assert snapshot.changed_at == clock.now()
    assert snapshot.step_seconds == STEP
    assert calculation.next_deadline() is None


def test_full_run_one_step_each(calculation: Calculation, clock: FakeClock) -> None:
    """start enters STARTING; each step later the next state follows, ending on SUCCESS."""
    started_wall = clock.now()
    assert states(calculation.start()) == [State.STARTING]
    assert calculation.snapshot.calculation_id == "calc-1"
    seen = []
    for expected in (State.IN_PROGRESS, State.ALMOST_DONE, State.SUCCESS):
        clock.advance(STEP - 0.001)
        assert calculation.advance() == [], "a transition came before its deadline"
        clock.advance(0.001)
        changes = calculation.advance()
        assert states(changes) == [expected]
        seen.extend(changes)
    assert [s.seq for s in seen] == [2, 3, 4]
    assert [s.changed_at - started_wall for s in seen] == [STEP, 2 * STEP, 3 * STEP]
    assert all(s.calculation_id == "calc-1" for s in seen)
    assert calculation.next_deadline() is None


def test_deadlines_come_from_the_start_not_from_wakeups(
    calculation: Calculation, clock: FakeClock
) -> None:
    """Late wake-ups do not push later deadlines back: no drift."""
    calculation.start()
    start = clock.now()
    clock.advance(STEP + 0.7)  # the driver woke up 0.7 s late
    calculation.advance()
    assert calculation.next_deadline() == start + 2 * STEP


def test_late_advance_applies_every_missed_transition_in_order(
    calculation: Calculation, clock: FakeClock
) -> None:
    """One late call catches up with all due transitions, each with its deadline's time."""
    calculation.start()
    started_wall = clock.now()
    clock.advance(10 * STEP)
    changes = calculation.advance()
    assert states(changes) == [State.IN_PROGRESS, State.ALMOST_DONE, State.SUCCESS]
    assert [c.changed_at - started_wall for c in changes] == [STEP, 2 * STEP, 3 * STEP]


def test_start_while_running_is_refused_and_changes_nothing(
    calculation: Calculation, clock: FakeClock
) -> None:
    """already_running in each running state; the snapshot stays the same object."""
    calculation.start()
    for _ in range(3):
        before = calculation.snapshot
        with pytest.raises(AlreadyRunning) as refused:
            calculation.start()
        assert refused.value.code == "already_running"
        assert str(before.state) in refused.value.message
        assert calculation.snapshot is before
        clock.advance(STEP)
        calculation.advance()
    assert calculation.snapshot.state is State.SUCCESS


def test_start_racing_start(calculation: Calculation) -> None:
    """Of two starts at the same instant, the first wins and the second is refused."""
    calculation.start()
    with pytest.raises(AlreadyRunning):
        calculation.start()
    assert calculation.snapshot.calculation_id == "calc-1"
    assert calculation.snapshot.seq == 1


@pytest.mark.parametrize("steps_done", [0, 1, 2])
def test_cancel_in_each_running_state(
    calculation: Calculation, clock: FakeClock, steps_done: int
) -> None:
    """cancel enters CANCELED at once, and no transition ever follows it."""
    calculation.start()
    clock.advance(steps_done * STEP + STEP / 2)
    calculation.advance()
    running = calculation.snapshot.state
    assert running.is_running
    assert states(calculation.cancel()) == [State.CANCELED]
    assert calculation.snapshot.calculation_id == "calc-1"
    assert calculation.next_deadline() is None
    clock.advance(10 * STEP)
    assert calculation.advance() == []
    assert calculation.snapshot.state is State.CANCELED


def test_cancel_at_the_very_moment_of_a_transition(
    calculation: Calculation, clock: FakeClock
) -> None:
    """At a deadline the transition happens first, then the cancel: both are published."""
    calculation.start()
    clock.advance(STEP)  # exactly IN_PROGRESS's deadline; nobody called advance() yet
    changes = calculation.cancel()
    assert states(changes) == [State.IN_PROGRESS, State.CANCELED]
    assert [c.seq for c in changes] == [2, 3]


def test_cancel_at_the_moment_of_success_is_refused(
    calculation: Calculation, clock: FakeClock
) -> None:
    """At SUCCESS's deadline the calculation is over: cancel is refused and SUCCESS stays."""
    calculation.start()
    clock.advance(3 * STEP)
    with pytest.raises(NotRunning):
        calculation.cancel()
    assert calculation.snapshot.state is State.SUCCESS


def test_two_cancels_in_a_row(calculation: Calculation) -> None:
    """The second cancel is refused (not_running) and changes nothing."""
    calculation.start()
    calculation.cancel()
    before = calculation.snapshot
    with pytest.raises(NotRunning) as refused:
        calculation.cancel()
    assert refused.value.code == "not_running"
    assert calculation.snapshot is before


def test_cancel_when_idle_is_refused(calculation: Calculation) -> None:
    """Nothing to cancel before the first start."""
    with pytest.raises(NotRunning):
        calculation.cancel()
    assert calculation.snapshot.seq == 0


@pytest.mark.parametrize("final", ["success", "canceled"])
def test_start_right_after_the_end(calculation: Calculation, clock: FakeClock, final: str) -> None:
    """Start is allowed at once after SUCCESS or CANCELED, with a new id."""
    calculation.start()
    if final == "success":
        clock.advance(3 * STEP)
        changes = calculation.start()  # the same call catches up to SUCCESS first
        assert states(changes) == [
            State.IN_PROGRESS,
            State.ALMOST_DONE,
            State.SUCCESS,
            State.STARTING,
        ]
    else:
        calculation.cancel()
        assert states(calculation.start()) == [State.STARTING]
    assert calculation.snapshot.calculation_id == "calc-2"


def test_seq_strictly_increases_across_calculations(
    calculation: Calculation, clock: FakeClock
) -> None:
    """Every change, in every calculation, gets the next seq."""
    seqs = []
    for _ in range(3):
        seqs += [c.seq for c in calculation.start()]
        clock.advance(STEP)
        seqs += [c.seq for c in calculation.advance()]
        seqs += [c.seq for c in calculation.cancel()]
    assert seqs == list(range(1, 10))


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_step_seconds_must_be_positive(bad: float) -> None:
    """A step of zero or less is refused when the machine is made."""
    with pytest.raises(ValueError, match="step_seconds"):
        Calculation(step_seconds=bad)


@pytest.mark.parametrize("deadline", [1, 2])
def test_a_refused_start_carries_the_transitions_it_caught_up_with(
    calculation: Calculation, clock: FakeClock, deadline: int
) -> None:
    """The refusal tells its caller which transitions it applied, so they can be announced."""
    calculation.start()
    clock.advance(deadline * STEP + 0.0005)
    with pytest.raises(AlreadyRunning) as refused:
        calculation.start()
    expected = [State.IN_PROGRESS, State.ALMOST_DONE][:deadline]
    assert states(list(refused.value.changes)) == expected
    assert refused.value.snapshot == calculation.snapshot == refused.value.changes[-1]


def test_a_refused_cancel_carries_success(calculation: Calculation, clock: FakeClock) -> None:
    """3.0005 steps after the start, a cancel applies the last transitions, then is refused."""
    calculation.start()
    clock.advance(3.0005 * STEP)
    with pytest.raises(NotRunning) as refused:
        calculation.cancel()
    assert states(list(refused.value.changes)) == [
        State.IN_PROGRESS,
        State.ALMOST_DONE,
        State.SUCCESS,
    ]
    assert [s.seq for s in refused.value.changes] == [2, 3, 4]


def test_a_refusal_with_nothing_due_carries_no_change(calculation: Calculation) -> None:
    """A cancel while IDLE changes nothing and carries nothing."""
    with pytest.raises(NotRunning) as refused:
        calculation.cancel()
    assert refused.value.changes == ()


ALICE = Attribution(client_id="c1", name="alice@laptop")
BOB = Attribution(client_id="c2", name="bob@desk")


def test_each_state_tells_the_whole_picture(calculation: Calculation, clock: FakeClock) -> None:
    """started_at on every state of a run; by on STARTING and CANCELED only;
    canceled_during on CANCELED only."""
    started_wall = clock.now()
    (starting,) = calculation.start(ALICE)
    assert (starting.started_at, starting.by, starting.canceled_during) == (
        started_wall,
        ALICE,
        None,
    )
    clock.advance(STEP)
    (in_progress,) = calculation.advance()
    assert (in_progress.started_at, in_progress.by) == (started_wall, None)
    (canceled,) = calculation.cancel(BOB)
    assert canceled.started_at == started_wall
    assert (canceled.canceled_during, canceled.by) == (State.IN_PROGRESS, BOB)


def test_the_history_keeps_the_last_20_runs_newest_first(
    calculation: Calculation, clock: FakeClock
) -> None:
    """Every finished run is recorded with who started and canceled it; 25 runs keep 20."""
    assert calculation.history == ()
    for number in range(25):
        calculation.start(ALICE)
        clock.advance(STEP)
        if number % 2:
            calculation.cancel(BOB)
        else:
            clock.advance(2 * STEP)
            calculation.advance()
        clock.advance(1)
    history = calculation.history
    assert len(history) == 20
    assert history[0].calculation_id == "calc-25"
    assert history[-1].calculation_id == "calc-6"
    success, canceled = history[0], history[1]
    assert (success.outcome, success.started_by, success.canceled_by) == (
        State.SUCCESS,
        ALICE,
        None,
    )
    assert success.seconds == 3 * STEP
    assert (canceled.outcome, canceled.canceled_during, canceled.canceled_by) == (
        State.CANCELED,
        State.IN_PROGRESS,
        BOB,
    )
    assert canceled.seconds == STEP


actions = st.lists(
    st.tuples(
        st.sampled_from(["start", "cancel", "advance"]),
        st.floats(min_value=0, max_value=3 * STEP),
        st.sampled_from([None, ALICE, BOB]),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(actions)
def test_any_sequence_keeps_the_invariants_and_the_record_travels(steps: list) -> None:
    """Whatever happens when: seq grows by one per change with no gap, no transition
    follows CANCELED or SUCCESS but a start, the history is bounded and newest first,
    and the record survives its JSON form unchanged (what Redis stores)."""
    now = 1_700_000_000.0
    record = rules.initial_record(STEP, now)
    ids = itertools.count(1)
    for action, wait, by in steps:
        now += wait
        if action == "start":
            outcome = rules.start(record, now, calculation_id=f"c{next(ids)}", by=by)
        elif action == "cancel":
            outcome = rules.cancel(record, now, by=by)
        else:
            outcome = rules.advance(record, now)
        seqs = [change.seq for change in outcome.changes]
        assert seqs == list(range(record.seq + 1, record.seq + 1 + len(seqs)))
        for before, after in itertools.pairwise([record.snapshot, *outcome.changes]):
            if before.state.is_final or before.state is State.IDLE:
                assert after.state is State.STARTING
        assert outcome.record.seq == record.seq + len(seqs)
        record = outcome.record
        assert len(record.history) <= rules.HISTORY_LENGTH
        assert [run.ended_at for run in record.history] == sorted(
            (run.ended_at for run in record.history), reverse=True
        )
        assert rules.Record.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_a_record_that_is_not_one_is_refused() -> None:
    """What Redis holds is checked like anything from the network."""
    with pytest.raises(ValueError, match="not a calculation record"):
        rules.Record.from_json({"state": {"type": "state"}, "history": {}, "started_by": None})
    with pytest.raises(ValueError):
        rules.Record.from_json({})
