"""What the UI derives from snapshots: progress and elapsed time."""

from __future__ import annotations

import pytest

from progress_protocol.states import State, StateSnapshot
from progress_tui.run import RunView

T0 = 1_700_000_000.0


def snap(state: State, k: float, calculation_id: str | None = "c1", seq: int = 1) -> StateSnapshot:
    return StateSnapshot(state, calculation_id, seq, T0 + k * 2.0, 2.0)


def test_progress_advances_smoothly_within_a_step() -> None:
    """Half-way through IN_PROGRESS is half-way through the run."""
    run = RunView.follow(None, snap(State.IN_PROGRESS, 1))
    assert run.progress(T0 + 3.0) == pytest.approx(0.5)
    assert run.progress(T0 + 2.0) == pytest.approx(1 / 3)
    # A late state message never makes the bar go past its step.
    assert run.progress(T0 + 100) == pytest.approx(2 / 3)


def test_elapsed_counts_from_the_start_even_when_joining_late() -> None:
    """A client that first sees ALMOST_DONE knows the run started two steps earlier."""
    run = RunView.follow(None, snap(State.ALMOST_DONE, 2))
    assert run.started_at == T0
    assert run.elapsed(T0 + 5.0) == pytest.approx(5.0)


def test_success_is_full_and_fixed() -> None:
    """SUCCESS: progress 1, elapsed the whole run whatever the time."""
    run = RunView.follow(None, snap(State.SUCCESS, 3))
    assert run.progress(T0 + 99) == 1.0
    assert run.elapsed(T0 + 99) == pytest.approx(6.0)


def test_cancel_remembers_where_it_hit() -> None:
    """After IN_PROGRESS, CANCELED keeps the start, the step reached, and the progress then."""
    run = RunView.follow(None, snap(State.IN_PROGRESS, 1, seq=2))
    canceled = RunView.follow(run, StateSnapshot(State.CANCELED, "c1", 3, T0 + 3.0, 2.0))
    assert canceled.reached is State.IN_PROGRESS
    assert canceled.elapsed(T0 + 50) == pytest.approx(3.0)
    assert canceled.progress(T0 + 50) == pytest.approx(0.5)


def test_a_new_run_forgets_the_old_one() -> None:
    """What was known of calculation c1 does not leak into c2."""
    run = RunView.follow(None, snap(State.IN_PROGRESS, 1))
    other = RunView.follow(run, StateSnapshot(State.CANCELED, "c2", 9, T0 + 10, 2.0))
    assert other.started_at is None and other.reached is None
    assert other.elapsed(T0 + 20) is None
    assert other.progress(T0 + 20) == 0.0


def test_idle_has_no_progress() -> None:
    """Before any run: nothing elapsed, nothing done."""
    run = RunView.follow(None, snap(State.IDLE, 0, calculation_id=None, seq=0))
    assert run.progress(T0 + 5) == 0.0
    assert run.elapsed(T0 + 5) is None
