"""Which ends of a calculation the TUI tells of: pure, no screen."""

from __future__ import annotations

import pytest

from progress_protocol.states import State, StateSnapshot
from progress_tui.ends import Ends, Notify


def state(kind: State, calculation_id: str | None = "run1") -> StateSnapshot:
    return StateSnapshot(kind, calculation_id, 1, 1_700_000_000.0, 2.0)


def test_n_cycles_mine_all_off() -> None:
    assert [Notify.MINE.following, Notify.ALL.following, Notify.OFF.following] == [
        Notify.ALL,
        Notify.OFF,
        Notify.MINE,
    ]
    assert Notify("mine") is Notify.MINE  # the option's values are the setting's


def run(ends: Ends, calculation_id: str, end: State = State.SUCCESS) -> bool:
    """A run seen from its start to its end: whether its end is told."""
    assert not ends.tell(state(State.STARTING, calculation_id))
    assert not ends.tell(state(State.IN_PROGRESS, calculation_id))
    return ends.tell(state(end, calculation_id))


@pytest.mark.parametrize(
    ("choice", "mine_told", "others_told"),
    [(Notify.MINE, True, False), (Notify.ALL, True, True), (Notify.OFF, False, False)],
)
def test_the_choice_says_which_ends_are_told(
    choice: Notify, mine_told: bool, others_told: bool
) -> None:
    """mine: the runs this app started; all: every run it saw coming; off: none."""
    ends = Ends(choice)
    ends.started("run1")
    assert run(ends, "run1") is mine_told
    assert run(ends, "run2", State.CANCELED) is others_told


def test_a_run_over_before_it_connected_is_never_told() -> None:
    ends = Ends(Notify.ALL)
    assert not ends.tell(state(State.SUCCESS))
    assert not ends.tell(state(State.SUCCESS))


def test_a_run_started_here_is_told_though_its_running_states_were_folded() -> None:
    """A busy screen may draw STARTING and SUCCESS only: its ack said it was ours."""
    ends = Ends(Notify.MINE)
    assert not ends.tell(state(State.IDLE, None))
    ends.started("run1")
    assert ends.tell(state(State.SUCCESS))
    assert not ends.tell(state(State.SUCCESS))  # once


def test_a_change_of_choice_applies_to_the_next_end() -> None:
    ends = Ends(Notify.OFF)
    ends.started("run1")
    assert not run(ends, "run1")
    ends.choice = Notify.ALL
    assert not ends.tell(state(State.SUCCESS))  # the same end, not told late
    assert run(ends, "run2")


@pytest.mark.parametrize("choice", [Notify.MINE, Notify.ALL])
def test_a_cancel_sent_from_here_is_not_told(choice: Notify) -> None:
    """Whoever pressed c knows: no bell for it. The same run ending otherwise would be."""
    ends = Ends(choice)
    ends.started("run1")
    ends.canceled("run1")
    assert not run(ends, "run1", State.CANCELED)
    ends.started("run2")
    assert run(ends, "run2", State.CANCELED)
