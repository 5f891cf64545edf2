"""What the calculation panel derives from one snapshot: progress, times, steps, who."""

from __future__ import annotations

import pytest

from progress_protocol.states import Attribution, Run, State, StateSnapshot
from progress_tui.run import Mark, RunView, lost_on_resync, short_id

T0 = 1_700_000_000.0
STEP = 2.0
ALICE = Attribution("a11ce", "alice@laptop")
BOB = Attribution("b0b", "bob@desk")

D, C, X, P = Mark.DONE, Mark.CURRENT, Mark.INTERRUPTED, Mark.PENDING


def snap(
    state: State,
    changed_at: float,
    *,
    calculation_id: str | None = "c1",
    seq: int = 1,
    started_at: float | None = T0,
    canceled_during: State | None = None,
    by: Attribution | None = None,
    step: float = STEP,
) -> StateSnapshot:
    return StateSnapshot(
        state, calculation_id, seq, changed_at, step, started_at, canceled_during, by
    )


def run_of(calculation_id: str = "c1", canceled_by: Attribution | None = None) -> Run:
    outcome = State.CANCELED if canceled_by else State.SUCCESS
    during = State.IN_PROGRESS if canceled_by else None
    return Run(calculation_id, T0, T0 + 3.2, outcome, during, ALICE, canceled_by)


def test_progress_and_times_advance_within_a_step() -> None:
    """Half-way through IN_PROGRESS is half-way through the run: 3.0 s elapsed, 3.0 s left."""
    run = RunView.of(snap(State.IN_PROGRESS, T0 + STEP))
    assert run.progress(T0 + 3.0) == pytest.approx(0.5)
    assert run.timing(T0 + 3.0) == "3.0 s elapsed, 3.0 s left"
    assert run.marks() == (D, C, P, P)


def test_a_late_state_never_shows_more_than_its_step() -> None:
    """The clock may pass the step's end before the next state arrives: the bar waits."""
    run = RunView.of(snap(State.IN_PROGRESS, T0 + STEP))
    assert run.progress(T0 + 100) == pytest.approx(2 / 3)
    assert run.timing(T0 + 100) == "4.0 s elapsed, 2.0 s left"


def test_a_cancel_is_drawn_from_its_snapshot_alone() -> None:
    """Canceled 3.2 s in, during IN_PROGRESS, by bob: the one CANCELED snapshot tells it
    all (a client that never saw the run draws ✔ ✘ · ✘ and 53 %)."""
    canceled = snap(State.CANCELED, T0 + 3.2, canceled_during=State.IN_PROGRESS, by=BOB)
    run = RunView.of(canceled, [run_of(canceled_by=BOB)])
    assert run.marks() == (D, X, P, X)
    assert run.progress(T0 + 99) == pytest.approx(3.2 / 6)
    assert run.timing(T0 + 99) == "canceled after 3.2 s of 6.0 s"
    assert run.attribution() == (
        "started by alice@laptop · canceled by bob@desk during IN_PROGRESS"
    )


@pytest.mark.parametrize(
    ("during", "marks"),
    [
        (State.STARTING, (X, P, P, X)),
        (State.IN_PROGRESS, (D, X, P, X)),
        (State.ALMOST_DONE, (D, D, X, X)),
    ],
)
def test_a_cancel_marks_the_step_it_interrupted(during: State, marks: tuple[Mark, ...]) -> None:
    """Whatever the step, the steps before it are done and it is marked interrupted."""
    assert RunView.of(snap(State.CANCELED, T0 + 1, canceled_during=during)).marks() == marks


def test_success_is_full_and_fixed() -> None:
    """SUCCESS: progress 1, "done in 6.0 s" whatever the time; started by, from the history."""
    run = RunView.of(snap(State.SUCCESS, T0 + 3 * STEP), [run_of("other"), run_of("c1")])
    assert run.marks() == (D, D, D, D)
    assert run.progress(T0 + 99) == 1.0
    assert run.timing(T0 + 99) == "done in 6.0 s"
    assert run.attribution() == "started by alice@laptop"


def test_who_started_while_running_comes_from_by() -> None:
    """STARTING carries who asked; a timer's transition carries no one, and a running
    calculation is in no history: nothing is guessed."""
    assert RunView.of(snap(State.STARTING, T0, by=ALICE)).attribution() == (
        "started by alice@laptop"
    )
    assert RunView.of(snap(State.IN_PROGRESS, T0 + STEP), [run_of()]).attribution() == ""


def test_this_clients_own_actions_say_you() -> None:
    """The client whose id asked reads "(you)" after its name; others read the name."""
    canceled = snap(State.CANCELED, T0 + 1, canceled_during=State.STARTING, by=BOB)
    run = RunView.of(canceled, [run_of(canceled_by=BOB)])
    assert run.attribution(mine=("b0b",)) == (
        "started by alice@laptop · canceled by bob@desk (you) during STARTING"
    )
    assert run.attribution(mine=("0ld", "a11ce")).startswith("started by alice@laptop (you) · ")


def test_names_are_shown_plainly() -> None:
    """A name with control characters shows them replaced; markup is left to the widget
    (shown as plain text there)."""
    run = RunView.of(snap(State.STARTING, T0, by=Attribution("x", "eve\x1b[31m[b]")))
    assert run.attribution() == "started by eve\N{REPLACEMENT CHARACTER}[31m[b]"


def test_long_steps_read_in_hours() -> None:
    """A step of an hour: "1 h 30 min elapsed, 1 h 30 min left", never seconds by the
    thousand."""
    run = RunView.of(snap(State.IN_PROGRESS, T0 + 3600, step=3600.0))
    assert run.timing(T0 + 5400) == "1 h 30 min elapsed, 1 h 30 min left"
    assert RunView.of(snap(State.SUCCESS, T0 + 10740, step=3580.0)).timing(T0) == (
        "done in 2 h 59 min"
    )


def test_idle_has_no_progress() -> None:
    """Before any run: nothing elapsed, nothing done, nothing to time."""
    run = RunView.of(snap(State.IDLE, T0, calculation_id=None, seq=0, started_at=None))
    assert run.progress(T0 + 5) == 0.0
    assert run.elapsed(T0 + 5) is None
    assert run.timing(T0 + 5) == ""
    assert run.marks() == (P, P, P, P)


def test_a_server_without_started_at_still_gives_the_times() -> None:
    """An older server's snapshot (no started_at): the start is worked out from the step."""
    run = RunView.of(snap(State.ALMOST_DONE, T0 + 2 * STEP, started_at=None))
    assert run.started_at == T0
    assert run.timing(T0 + 5.0) == "5.0 s elapsed, 1.0 s left"


def test_a_calculation_is_lost_when_the_server_restarted() -> None:
    """Running before the loss; after it the server is IDLE, or its seq went back, or the
    calculation is in neither the state nor the history: lost. Finished meanwhile: not."""
    before = snap(State.IN_PROGRESS, T0 + STEP, calculation_id="5d77c0ffee", seq=7)
    idle = snap(State.IDLE, T0 + 9, calculation_id=None, seq=0, started_at=None)
    other = snap(State.STARTING, T0 + 9, calculation_id="other", seq=9)
    assert lost_on_resync(before, idle) is True
    assert lost_on_resync(before, snap(State.STARTING, T0 + 9, calculation_id="o", seq=1))
    assert lost_on_resync(before, other) is None  # only the history can tell
    assert lost_on_resync(before, other, [run_of("5d77c0ffee")]) is False
    assert lost_on_resync(before, other, [run_of("older")]) is True
    done = snap(State.SUCCESS, T0 + 9, calculation_id="5d77c0ffee", seq=9)
    assert lost_on_resync(before, done) is False
    idle_before = snap(State.SUCCESS, T0, calculation_id="5d77c0ffee", seq=7)
    assert lost_on_resync(idle_before, idle) is False  # nothing was running
    assert short_id("5d77c0ffee") == "5d77…"
