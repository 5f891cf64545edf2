"""The in-memory backend on a real event loop with tiny steps."""

from __future__ import annotations

import asyncio
import logging

import pytest

from progress_server.backends import MemoryBackend
from progress_server.calculation import AlreadyRunning, State, StateSnapshot
from tests.helpers import STEP, TIMEOUT


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
    backend.subscribe(changes.put_nowait)
    await backend.start()
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
    backend.subscribe(lambda snapshot: heard.append(snapshot.seq))
    snapshot = await backend.start()
    assert snapshot.state is State.STARTING
    assert heard == []
    await asyncio.sleep(0)
    assert heard == [snapshot.seq]


async def test_no_transition_follows_cancel(backend: MemoryBackend) -> None:
    """cancel clears the pending timer: nothing comes after CANCELED."""
    changes: asyncio.Queue[StateSnapshot] = asyncio.Queue()
    backend.subscribe(changes.put_nowait)
    await backend.start()
    await backend.cancel()
    assert await collect_until(changes, State.CANCELED) == [State.STARTING, State.CANCELED]
    await asyncio.sleep(4 * STEP)
    assert changes.empty()


async def test_refused_start_announces_nothing(backend: MemoryBackend) -> None:
    """A refused action raises and publishes no change."""
    heard: list[StateSnapshot] = []
    await backend.start()
    await asyncio.sleep(0)  # STARTING is delivered
    backend.subscribe(heard.append)
    with pytest.raises(AlreadyRunning):
        await backend.start()
    await asyncio.sleep(0)
    assert heard == []


async def test_a_failing_listener_does_not_stop_the_others(
    backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in one listener is logged; the next listener still gets the change."""

    def broken(snapshot: StateSnapshot) -> None:
        raise RuntimeError("boom")

    heard: list[StateSnapshot] = []
    backend.subscribe(broken)
    backend.subscribe(heard.append)
    with caplog.at_level(logging.ERROR):
        await backend.start()
        await asyncio.sleep(0)
    assert [s.state for s in heard] == [State.STARTING]
    assert "listener failed" in caplog.text


async def test_unsubscribe_stops_the_changes(backend: MemoryBackend) -> None:
    """After unsubscribe, a listener hears nothing more."""
    heard: list[StateSnapshot] = []
    unsubscribe = backend.subscribe(heard.append)
    unsubscribe()
    await backend.start()
    await asyncio.sleep(0)
    assert heard == []


async def test_aclose_stops_the_timers(backend: MemoryBackend) -> None:
    """After aclose nothing more happens, even mid-run."""
    heard: list[StateSnapshot] = []
    await backend.start()
    await asyncio.sleep(0)  # STARTING is delivered
    backend.subscribe(heard.append)
    await backend.aclose()
    await asyncio.sleep(4 * STEP)
    assert heard == []
