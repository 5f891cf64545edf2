"""What every backend promises (backends/base.py), checked against each: the memory
backend, and the Redis backend on a real redis-server."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from progress_protocol.states import Attribution, State
from progress_server.backends.base import Backend
from progress_server.backends.memory import MemoryBackend
from progress_server.backends.redis import RedisBackend
from progress_server.calculation import ActionRefused, AlreadyRunning, Change, Clock, NotRunning
from progress_server.presence import Roster
from tests.helpers import STEP, TIMEOUT, FakeClock

MakeBackend = Callable[..., Awaitable[Backend]]
RUN = [State.STARTING, State.IN_PROGRESS, State.ALMOST_DONE, State.SUCCESS]


@pytest.fixture(params=["memory", "redis"])
async def make_backend(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[MakeBackend]:
    """Makes started backends of one kind; all of one test share one calculation."""
    made: list[Backend] = []

    async def make(*, step_seconds: float = STEP, clock: Clock | None = None) -> Backend:
        backend: Backend
        if request.param == "memory":
            backend = (
                MemoryBackend(step_seconds=step_seconds, clock=clock)
                if clock
                else MemoryBackend(step_seconds=step_seconds)
            )
        else:
            url = request.getfixturevalue("redis_url")
            backend = RedisBackend(url, prefix=redis_prefix, step_seconds=step_seconds, clock=clock)
        await backend.start()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


class Heard:
    """What one listener heard, with a way to await more."""

    def __init__(self, backend: Backend) -> None:
        self.changes: list[Change] = []
        self._more = asyncio.Event()
        self.unsubscribe = backend.subscribe(self._hear)

    def _hear(self, change: Change) -> None:
        self.changes.append(change)
        self._more.set()

    @property
    def states(self) -> list[State]:
        return [change.snapshot.state for change in self.changes]

    @property
    def seqs(self) -> list[int]:
        return [change.snapshot.seq for change in self.changes]

    async def until(self, done: Callable[[Heard], bool], timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while not done(self):
                self._more.clear()
                await self._more.wait()

    async def until_state(self, state: State) -> None:
        await self.until(lambda heard: bool(heard.states) and heard.states[-1] is state)


async def test_runs_to_success_on_its_own(make_backend: MakeBackend) -> None:
    """After a start, the timers carry the calculation through every state to SUCCESS,
    each on its deadline's time, with seq one larger each time."""
    backend = await make_backend()
    heard = Heard(backend)
    started = await backend.start_calculation()
    await heard.until_state(State.SUCCESS)
    assert heard.states == RUN
    assert heard.seqs == list(range(started.seq, started.seq + 4))
    assert started.started_at is not None
    assert [c.snapshot.changed_at - started.started_at for c in heard.changes] == pytest.approx(
        [0, STEP, 2 * STEP, 3 * STEP]
    )
    assert (await backend.snapshot()).state is State.SUCCESS


async def test_listeners_hear_of_a_change_after_the_caller_resumed(
    make_backend: MakeBackend,
) -> None:
    """start returns the new snapshot before any listener hears it (the ack goes first)."""
    backend = await make_backend()
    heard = Heard(backend)
    snapshot = await backend.start_calculation()
    assert snapshot.state is State.STARTING
    assert heard.changes == []
    await heard.until(lambda h: h.seqs == [snapshot.seq])


async def test_no_transition_follows_cancel(make_backend: MakeBackend) -> None:
    """cancel ends the calculation: nothing comes after CANCELED, however late."""
    clock = FakeClock()  # the cancel comes while STARTING, however busy the machine
    backend = await make_backend(clock=clock)
    heard = Heard(backend)
    await backend.start_calculation()
    canceled = await backend.cancel_calculation()
    assert canceled.canceled_during is State.STARTING
    await heard.until_state(State.CANCELED)
    clock.advance(4 * STEP)
    await backend.snapshot()  # catches up with the clock: every deadline has passed
    # Listeners hear every change in order: one announced after CANCELED would come
    # before this start's STARTING.
    await backend.start_calculation()
    await heard.until(lambda h: len(h.changes) >= 3)
    assert heard.states[:3] == [State.STARTING, State.CANCELED, State.STARTING]


async def test_a_refusal_with_nothing_due_announces_nothing(make_backend: MakeBackend) -> None:
    """A refused action that caught up with nothing raises and announces nothing."""
    backend = await make_backend(step_seconds=30.0)
    with pytest.raises(NotRunning):
        await backend.cancel_calculation()
    started = await backend.start_calculation()
    heard = Heard(backend)
    with pytest.raises(AlreadyRunning):
        await backend.start_calculation()
    # Listeners hear every change in order: one announced by the refusal would come
    # before this cancel's CANCELED.
    canceled = await backend.cancel_calculation()
    await heard.until(lambda h: canceled.seq in h.seqs)
    # STARTING is heard once if it was still on its way when the listener came.
    assert heard.seqs in ([canceled.seq], [started.seq, canceled.seq]), heard.seqs


async def test_a_failing_listener_does_not_stop_the_others(
    make_backend: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in one listener is logged; the next listener still gets the change."""
    backend = await make_backend()

    def broken(change: Change) -> None:
        raise RuntimeError("boom")

    backend.subscribe(broken)
    heard = Heard(backend)
    with caplog.at_level(logging.ERROR):
        await backend.start_calculation()
        await heard.until(lambda h: bool(h.changes))
    assert heard.states[0] is State.STARTING
    assert "listener failed" in caplog.text


async def test_unsubscribe_stops_the_changes(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    heard = Heard(backend)
    witness = Heard(backend)
    heard.unsubscribe()
    await backend.start_calculation()
    await witness.until(lambda h: bool(h.changes))
    assert heard.changes == []


async def test_aclose_stops_the_timers(make_backend: MakeBackend) -> None:
    """After aclose nothing more happens, even mid-run."""
    backend = await make_backend()
    heard = Heard(backend)
    await backend.start_calculation()
    await heard.until(lambda h: bool(h.changes))
    await backend.aclose()
    await asyncio.sleep(4 * STEP)
    assert heard.states == [State.STARTING]


@pytest.mark.parametrize("past", [0.0, 0.0005], ids=["at", "just-after"])
@pytest.mark.parametrize("deadline", [1, 2, 3])
@pytest.mark.parametrize("action", ["start", "cancel"])
async def test_an_action_at_a_deadline_announces_every_transition_first(
    make_backend: MakeBackend, action: str, deadline: int, past: float
) -> None:
    """Whether it is accepted or refused, an action at a deadline first announces the
    transitions that came due, in order and with no gap in seq; a refused one does so
    before its refusal reaches the caller."""
    clock = FakeClock()
    step = 30.0  # no timer fires during the test: only the hand-moved clock moves
    backend = await make_backend(step_seconds=step, clock=clock)
    heard = Heard(backend)
    first = await backend.start_calculation()
    await heard.until(lambda h: bool(h.changes))
    clock.advance(deadline * step + past)
    refused: ActionRefused | None = None
    try:
        await getattr(backend, f"{action}_calculation")()
    except ActionRefused as exc:
        refused = exc
        heard_before_refusal = heard.states
    due = RUN[: deadline + 1]
    if action == "start" and deadline < 3:
        assert isinstance(refused, AlreadyRunning)
        assert heard_before_refusal == due
    elif action == "cancel" and deadline == 3:
        assert isinstance(refused, NotRunning)
        assert "SUCCESS" in refused.message
        assert heard_before_refusal == due
    else:
        assert refused is None
        following = State.STARTING if action == "start" else State.CANCELED
        await heard.until(lambda h: h.states == [*due, following])
    assert heard.seqs == list(range(first.seq, first.seq + len(heard.seqs)))
    assert (await backend.snapshot()) == heard.changes[-1].snapshot


async def test_the_end_of_a_calculation_carries_the_history(make_backend: MakeBackend) -> None:
    """The change that ends a calculation carries the history, newest first, with who
    started and who canceled; the others carry none."""
    backend = await make_backend(clock=FakeClock())  # the cancel comes while STARTING
    heard = Heard(backend)
    alice, bob = Attribution("c1", "alice"), Attribution(None, "bob")
    started = await backend.start_calculation(alice)
    await backend.cancel_calculation(bob)
    await heard.until_state(State.CANCELED)
    assert [change.history is None for change in heard.changes] == [True, False]
    (run, *_) = heard.changes[-1].history or ()
    assert (run.calculation_id, run.started_by, run.canceled_by) == (
        started.calculation_id,
        alice,
        bob,
    )
    assert (await backend.history())[0] == run


async def test_the_clients_count_comes_from_the_backend(make_backend: MakeBackend) -> None:
    """What a lone instance reports, the backend answers with no other instance's
    clients (its own, the hub knows live)."""
    backend = await make_backend()
    heard: list[tuple[int, Roster]] = []
    backend.subscribe_clients(lambda count, others: heard.append((count, Counter(others))))
    roster: Roster = Counter({("alice", "operator", "tui"): 2, (None, "viewer", "other"): 1})
    backend.report_clients(3, roster)
    async with asyncio.timeout(TIMEOUT):
        while not heard:
            await asyncio.sleep(0.01)
    assert heard[-1] == (0, Counter())
    assert backend.problem is None


async def test_the_redis_backend_hears_the_other_instances_rosters(
    redis_url: str, redis_prefix: str
) -> None:
    """Two instances on one Redis: each hears the other's clients, how many and who;
    once the other reports nobody, nobody of it."""
    first, second = (RedisBackend(redis_url, prefix=redis_prefix) for _ in range(2))
    for backend in (first, second):
        await backend.start()
    try:
        heard: list[tuple[int, Roster]] = []
        second.subscribe_clients(lambda total, others: heard.append((total, Counter(others))))
        roster: Roster = Counter({("alice", "operator", "tui"): 2})
        first.report_clients(2, roster)
        second.report_clients(1, Counter({("bob", "viewer", "ctl"): 1}))
        async with asyncio.timeout(TIMEOUT):
            while not heard or heard[-1] != (2, roster):
                await asyncio.sleep(0.01)
        first.report_clients(0, Counter())
        async with asyncio.timeout(TIMEOUT):
            while heard[-1] != (0, Counter()):
                await asyncio.sleep(0.01)
    finally:
        for backend in (first, second):
            await backend.aclose()
