"""The in-memory backend on a real event loop with tiny steps."""

from __future__ import annotations

import asyncio
import logging

import pytest

from progress_server.backends import Change, MemoryBackend
from progress_server.calculation import (
    ActionRefused,
    AlreadyRunning,
    NotRunning,
    State,
    StateSnapshot,
)
from tests.helpers import STEP, TIMEOUT, FakeClock


async def collect_until(changes: asyncio.Queue[StateSnapshot], final: State) -> list[State]:
    seen = []
    async with asyncio.timeout(TIMEOUT):
        while not seen or seen[-1] is not final:
            seen.append((await changes.get()).state)
    return seen


@pytest.fixture
async def backend():
    backend = MemoryBackend(step_seconds=STEP)
    yield backend
    await backend.aclose()


async def test_runs_to_success_on_its_own(backend: MemoryBackend) -> None:
    """After start, the timers carry the calculation through every state to SUCCESS."""
    changes: asyncio.Queue[StateSnapshot] = asyncio.Queue()
    backend.subscribe(lambda change: changes.put_nowait(change.snapshot))
    await backend.start_calculation()
    assert await collect_until(changes, State.SUCCESS) == [
        State.STARTING,
        State.IN_PROGRESS,
        State.ALMOST_DONE,
        State.SUCCESS,
    ]
    assert (await backend.snapshot()).state is State.SUCCESS


async def test_listeners_hear_of_a_change_after_the_caller_resumed(backend: MemoryBackend) -> None:
    """start returns the new snapshot before any listener runs (so the ack goes first)."""
    heard: list[int] = []
    backend.subscribe(lambda change: heard.append(change.snapshot.seq))
    snapshot = await backend.start_calculation()
    assert snapshot.state is State.STARTING
    assert heard == []
    await asyncio.sleep(0)
    assert heard == [snapshot.seq]


async def test_no_transition_follows_cancel(backend: MemoryBackend) -> None:
    """cancel clears the pending timer: nothing comes after CANCELED."""
    changes: asyncio.Queue[StateSnapshot] = asyncio.Queue()
    backend.subscribe(lambda change: changes.put_nowait(change.snapshot))
    await backend.start_calculation()
    await backend.cancel_calculation()
    assert await collect_until(changes, State.CANCELED) == [State.STARTING, State.CANCELED]
    await asyncio.sleep(4 * STEP)
    assert changes.empty()


async def test_refused_start_announces_nothing(backend: MemoryBackend) -> None:
    """A refused action raises and publishes no change."""
    heard: list[StateSnapshot] = []
    await backend.start_calculation()
    await asyncio.sleep(0)  # STARTING is delivered
    backend.subscribe(lambda change: heard.append(change.snapshot))
    with pytest.raises(AlreadyRunning):
        await backend.start_calculation()
    await asyncio.sleep(0)
    assert heard == []


async def test_a_failing_listener_does_not_stop_the_others(
    backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in one listener is logged; the next listener still gets the change."""

    def broken(change: Change) -> None:
        raise RuntimeError("boom")

    heard: list[StateSnapshot] = []
    backend.subscribe(broken)
    backend.subscribe(lambda change: heard.append(change.snapshot))
    with caplog.at_level(logging.ERROR):
        await backend.start_calculation()
        await asyncio.sleep(0)
    assert [s.state for s in heard] == [State.STARTING]
    assert "listener failed" in caplog.text


async def test_unsubscribe_stops_the_changes(backend: MemoryBackend) -> None:
    """After unsubscribe, a listener hears nothing more."""
    heard: list[StateSnapshot] = []
    unsubscribe = backend.subscribe(lambda change: heard.append(change.snapshot))
    unsubscribe()
    await backend.start_calculation()
    await asyncio.sleep(0)
    assert heard == []


async def test_aclose_stops_the_timers(backend: MemoryBackend) -> None:
    """After aclose nothing more happens, even mid-run."""
    heard: list[StateSnapshot] = []
    await backend.start_calculation()
    await asyncio.sleep(0)  # STARTING is delivered
    backend.subscribe(lambda change: heard.append(change.snapshot))
    await backend.aclose()
    await asyncio.sleep(4 * STEP)
    assert heard == []


RUN = [State.STARTING, State.IN_PROGRESS, State.ALMOST_DONE, State.SUCCESS]


@pytest.mark.parametrize("past", [0.0, 0.0005], ids=["at", "just-after"])
@pytest.mark.parametrize("deadline", [1, 2, 3])
@pytest.mark.parametrize("action", ["start", "cancel"])
async def test_an_action_at_a_deadline_announces_every_transition_first(
    action: str, deadline: int, past: float
) -> None:
    """Whether it is accepted or refused, an action at a deadline first announces the
    transitions that came due, in order and with no gap in seq; a refused one does so
    before its refusal reaches the caller."""
    clock = FakeClock()
    step = 2.0  # the timers never fire during the test: only the hand-moved clock moves
    backend = MemoryBackend(step_seconds=step, clock=clock)
    heard: list[StateSnapshot] = []
    backend.subscribe(lambda change: heard.append(change.snapshot))
    try:
        await backend.start_calculation()
        clock.advance(deadline * step + past)
        refused: ActionRefused | None = None
        try:
            await getattr(backend, f"{action}_calculation")()
        except ActionRefused as exc:
            refused = exc
            heard_before_refusal = [s.state for s in heard]
        await asyncio.sleep(0)  # an accepted action's changes follow its caller
        due = RUN[: deadline + 1]
        if action == "start" and deadline < 3:
            assert isinstance(refused, AlreadyRunning)
            assert heard_before_refusal == due
            assert [s.state for s in heard] == due
        elif action == "cancel" and deadline == 3:
            assert isinstance(refused, NotRunning)
            assert "SUCCESS" in refused.message
            assert heard_before_refusal == due
            assert [s.state for s in heard] == due
        else:
            assert refused is None
            following = State.STARTING if action == "start" else State.CANCELED
            assert [s.state for s in heard] == [*due, following]
        assert [s.seq for s in heard] == list(range(1, len(heard) + 1))
        assert (await backend.snapshot()) == heard[-1]
    finally:
        await backend.aclose()


async def test_changes_reach_listeners_in_order_whatever_applied_them() -> None:
    """A refusal that catches up while an earlier change still waits for delivery
    delivers both, oldest first."""
    clock = FakeClock()
    backend = MemoryBackend(step_seconds=2.0, clock=clock)
    heard: list[StateSnapshot] = []
    backend.subscribe(lambda change: heard.append(change.snapshot))
    try:
        await backend.start_calculation()  # STARTING waits for its delivery
        clock.advance(3 * 2.0)
        with pytest.raises(NotRunning):
            await backend.cancel_calculation()
        assert [s.state for s in heard] == RUN
        await asyncio.sleep(0)
        assert [s.state for s in heard] == RUN, "a change was delivered twice"
    finally:
        await backend.aclose()
