"""What the calculation panel derives from one snapshot: progress, times, steps, who."""

from __future__ import annotations

import pytest

from progress_protocol.states import Attribution, Run, State, StateSnapshot
from progress_tui.panel import Mark, PanelView, short_id

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
    view = PanelView.of(snap(State.IN_PROGRESS, T0 + STEP))
    assert view.progress(T0 + 3.0) == pytest.approx(0.5)
    assert view.timing(T0 + 3.0) == "3.0 s elapsed, 3.0 s left"
    assert view.marks() == (D, C, P, P)


def test_a_late_state_never_shows_more_than_its_step() -> None:
    """The clock may pass the step's end before the next state arrives: the bar waits."""
    view = PanelView.of(snap(State.IN_PROGRESS, T0 + STEP))
    assert view.progress(T0 + 100) == pytest.approx(2 / 3)
    assert view.timing(T0 + 100) == "4.0 s elapsed, 2.0 s left"


def test_a_cancel_is_drawn_from_its_snapshot_alone() -> None:
    """Canceled 3.2 s in, during IN_PROGRESS, by bob: the one CANCELED snapshot tells it
    all (a client that never saw the run draws ✔ ✘ · ✘ and 53 %)."""
    canceled = snap(State.CANCELED, T0 + 3.2, canceled_during=State.IN_PROGRESS, by=BOB)
    view = PanelView.of(canceled, [run_of(canceled_by=BOB)])
    assert view.marks() == (D, X, P, X)
    assert view.progress(T0 + 99) == pytest.approx(3.2 / 6)
    assert view.timing(T0 + 99) == "canceled after 3.2 s of 6.0 s"
    assert view.attribution() == (
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
    assert PanelView.of(snap(State.CANCELED, T0 + 1, canceled_during=during)).marks() == marks


def test_success_is_full_and_fixed() -> None:
    """SUCCESS: progress 1, "done in 6.0 s" whatever the time; started by, from the history."""
    view = PanelView.of(snap(State.SUCCESS, T0 + 3 * STEP), [run_of("other"), run_of("c1")])
    assert view.marks() == (D, D, D, D)
    assert view.progress(T0 + 99) == 1.0
    assert view.timing(T0 + 99) == "done in 6.0 s"
    assert view.attribution() == "started by alice@laptop"


def test_who_started_while_running_comes_from_by() -> None:
    """STARTING carries who asked; a timer's transition carries no one, and a running
    calculation is in no history: nothing is guessed."""
    assert PanelView.of(snap(State.STARTING, T0, by=ALICE)).attribution() == (
        "started by alice@laptop"
    )
    assert PanelView.of(snap(State.IN_PROGRESS, T0 + STEP), [run_of()]).attribution() == ""


def test_this_clients_own_actions_say_you() -> None:
    """The client whose id asked reads "(you)" after its name; others read the name."""
    canceled = snap(State.CANCELED, T0 + 1, canceled_during=State.STARTING, by=BOB)
    view = PanelView.of(canceled, [run_of(canceled_by=BOB)])
    assert view.attribution(mine=("b0b",)) == (
        "started by alice@laptop · canceled by bob@desk (you) during STARTING"
    )
    assert view.attribution(mine=("0ld", "a11ce")).startswith("started by alice@laptop (you) · ")


def test_names_are_shown_plainly() -> None:
    """A name with control characters shows them replaced; markup is left to the widget
    (shown as plain text there)."""
    view = PanelView.of(snap(State.STARTING, T0, by=Attribution("x", "eve\x1b[31m[b]")))
    assert view.attribution() == "started by eve\N{REPLACEMENT CHARACTER}[31m[b]"


def test_long_steps_read_in_hours() -> None:
    """A step of an hour: "1 h 30 min elapsed, 1 h 30 min left", never seconds by the
    thousand."""
    view = PanelView.of(snap(State.IN_PROGRESS, T0 + 3600, step=3600.0))
    assert view.timing(T0 + 5400) == "1 h 30 min elapsed, 1 h 30 min left"
    assert PanelView.of(snap(State.SUCCESS, T0 + 10740, step=3580.0)).timing(T0) == (
        "done in 2 h 59 min"
    )


def test_idle_has_no_progress() -> None:
    """Before any run: nothing elapsed, nothing done, nothing to time."""
    view = PanelView.of(snap(State.IDLE, T0, calculation_id=None, seq=0, started_at=None))
    assert view.progress(T0 + 5) == 0.0
    assert view.elapsed(T0 + 5) is None
    assert view.timing(T0 + 5) == ""
    assert view.marks() == (P, P, P, P)


def test_a_server_without_started_at_still_gives_the_times() -> None:
    """An older server's snapshot (no started_at): the start is worked out from the step."""
    view = PanelView.of(snap(State.ALMOST_DONE, T0 + 2 * STEP, started_at=None))
    assert view.started_at == T0
    assert view.timing(T0 + 5.0) == "5.0 s elapsed, 1.0 s left"


def test_a_short_id_is_enough_to_tell_calculations_apart() -> None:
    """Four characters and an ellipsis; a short id is kept whole, made printable."""
    assert short_id("5d77c0ffee") == "5d77…"
    assert short_id("5d7") == "5d7"
    assert short_id("\x1b[2J") == "\N{REPLACEMENT CHARACTER}[2J"
