"""The Redis backend: one calculation shared by every server instance that uses it.

The record (:class:`~progress_server.calculation.Record`) lives under one key. Every
change is a compare-and-set: read the key and Redis's clock in one round trip, apply
the same pure transition the memory backend applies, then hand Redis the new record
with the exact text it replaces (:data:`CAS_SCRIPT`, a few lines of Lua that compare,
store and publish in one atomic step, and know nothing of the rules). If another
instance changed the key in between, the script answers with what it holds now and
Redis's time, and the transition is computed again from that, one round trip per try:
so of two starts at the same moment exactly one wins, seq grows by one per change
across the cluster, and a change is published in the same atomic step that stores it.
The rules stay in Python, written once.

An outcome that cannot be known is never guessed. Each action carries an id that the
script stores with the change, in the record (the last :data:`RECENT_ACTIONS`) and under
a key of its own (for a minute); when Redis's answer is lost (a timeout, a dropped
connection), the next try first looks the id up: found, the action landed and its
caller is acknowledged; not found, the try stores the record anew, which also fences
off the lost write (it compared against a text that is gone). When the store does not
answer within the action's budget (:attr:`RedisBackend.timeout` twice), the caller hears
``unavailable``, never a refusal it did not earn.

The actions that arrive while one is under way wait, and go together in the next write:
a hundred clients pressing start at once cost one round trip, not a hundred racing
each other for Redis.

Deadlines are times on Redis's clock (``TIME``), stored in the record, so every
instance computes the same ones whatever its own clock says. Every instance arms a
timer for the next deadline and tries to advance when it fires: the first write wins,
the others find nothing due and hand their clients what the winner stored. No instance
is special, so losing any of them loses no transition.

Every instance hears the changes on one channel, in commit order, and hands them to
its listeners; after a gap (its subscription was lost, or answered no ping) it reads
the record and hands over the latest state. If Redis forgets the record (restarted
without persistence), the instances write back the newest one they know: seq never
goes backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from progress_protocol.messages import Command
from progress_protocol.states import DEFAULT_STEP_SECONDS, Attribution, Run, StateSnapshot
from progress_protocol.urls import safe_url

from .. import calculation
from ..calculation import (
    Change,
    Clock,
    Outcome,
    Record,
    changes_of,
    new_calculation_id,
    snapshot_from_json,
    snapshot_to_json,
)
from ..presence import Roster, roster_from_json, roster_to_json
from .base import (
    BackendUnavailable,
    CommitListener,
    CountListener,
    LatencyListener,
    Listener,
    Unsubscribe,
)

try:
    import redis.asyncio as aioredis
    from redis.asyncio.client import PubSub
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError, ResponseError
except ImportError:  # pragma: no cover - the extra is not installed
    aioredis = None  # type: ignore[assignment]

__all__ = ["CAS_SCRIPT", "DEFAULT_PREFIX", "DEFAULT_TIMEOUT", "RedisBackend", "check_url"]

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "progress:"

#: How long one round trip to Redis may take before it counts as failed. An action
#: gets twice this in all (a try, and the look-up that resolves a lost answer), which
#: keeps its answer well inside the 5 s an HTTP request or a handshake may take.
DEFAULT_TIMEOUT = 1.5

#: How often an instance says how many clients it has, and how long a count is
#: believed without news (an instance that died stops counting after that).
HEARTBEAT_SECONDS = 2.0
COUNT_TTL_SECONDS = 10.0

#: While Redis is out of reach, how often it is tried again: readiness comes back
#: within this of Redis's return.
PROBE_SECONDS = 0.25

#: Failed tries after which a change that cannot have landed gives up before its
#: budget is spent: a refused connection is answered at once, not after seconds. One
#: whose write may have landed tries to learn whether it did until the budget's end.
MAX_FAILURES = 3

#: How long the id of an action stays in Redis after it landed: far longer than any
#: caller waits to learn whether it did.
ACTION_ID_TTL_MS = 60_000

#: Accepted actions whose ids the record keeps, newest first: an action whose answer
#: was lost is found there even if Redis lost the keys of the ids (a restart).
RECENT_ACTIONS = 32

#: Actions that wait while one is under way go together, this many at most a write.
MAX_BATCH = 256

#: Connections to Redis at most: actions take one at a time (they go together), the
#: subscription one, the timers and the count a few.
MAX_CONNECTIONS = 16

#: What the subscription's pings carry, to tell their pongs from anything else.
PING_PAYLOAD = "progress-subscription"

#: Compare-and-set of the record, with its announcement and the ids of the actions it
#: applies, in one atomic step. KEYS: the record, then a key per action id. ARGV: the
#: text the record must still hold ("" for none), the new text, the channel, the
#: message ("" for none), the ids' time to live in ms, then what each id key holds.
#: Answers {1} when stored; {2} when one of the actions had landed already (an earlier
#: try whose answer was lost: look them up); {0, text, seconds, microseconds} when the
#: record is no longer the one expected: what it is, and Redis's time, to try again.
CAS_SCRIPT = """
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return {2} end
end
local stored = redis.call('GET', KEYS[1])
if (stored or '') ~= ARGV[1] then
  local now = redis.call('TIME')
  return {0, stored or '', now[1], now[2]}
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 4], 'PX', ARGV[5])
end
return {1}
"""


def check_url(url: str) -> None:
    """Check that ``url`` can be used, before anything starts.

    Raises:
        BackendUnavailable: The redis package is not installed (the extra).
        ValueError: The URL cannot be read; the sentence shows none of it.
    """
    if aioredis is None:
        raise BackendUnavailable("--redis-url needs the redis extra: pip install 'progress[redis]'")
    try:
        aioredis.BlockingConnectionPool.from_url(url)
    except (ValueError, TypeError):
        # redis-py's own sentence quotes the part it could not read: maybe a password.
        raise ValueError(
            "cannot read its host, port and database; a password holding '/', '?', '#' "
            "or '@' must be percent-encoded (%2F, %3F, %23, %40)."
        ) from None


class _SubscriptionLost(Exception):
    """The subscription answered no ping in time: it is torn down and made again."""


#: The ids of recent accepted actions, newest first, with the state each left.
Landed = tuple[tuple[str, StateSnapshot], ...]


@dataclass(eq=False)
class _Request:
    """An action waiting for its write: its id, its rule, and its caller's future."""

    verb: Command
    step: Callable[[Record, float], Outcome]
    deadline: float
    future: asyncio.Future[Outcome | StateSnapshot]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class RedisBackend:
    """The calculation's record in Redis, moved by the pure transitions.

    Args:
        url: ``redis://`` or ``rediss://``, with the password in it if there is one.
        prefix: Put before every key and channel, so deployments can share a Redis.
        step_seconds: The step of a calculation this instance creates; a record that
            already exists keeps its own.
        timeout: Seconds one round trip to Redis may take; an action gets twice this.
        clock: For tests only: a clock to use instead of Redis's.
        new_id: Makes the id of each new calculation.
        instance: This instance's name in the clients count (unique by default).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        step_seconds: float = DEFAULT_STEP_SECONDS,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock | None = None,
        new_id: Callable[[], str] = new_calculation_id,
        instance: str | None = None,
    ) -> None:
        if aioredis is None:  # pragma: no cover
            raise BackendUnavailable(
                "--redis-url needs the redis package: pip install 'progress[redis]'"
            )
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self._step_seconds = step_seconds
        self._clock = clock
        self._new_id = new_id
        self.instance = instance or new_calculation_id()
        self._key = f"{prefix}record"
        self._channel = f"{prefix}events"
        self._clients_key = f"{prefix}clients"
        self._presence_key = f"{prefix}presence"
        self._actions_prefix = f"{prefix}action:"
        # Fail fast: the backend tries again by itself, within its own budget. No
        # health-check PING before each command: a dead connection shows on use, and
        # the subscription has pings of its own whose answers are awaited. A
        # connection made costs no round trip more than it must (far from Redis, each
        # is felt). Past MAX_CONNECTIONS, a command waits for one, within the timeout.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            **_lean_connections(),
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._cas = self._redis.register_script(CAS_SCRIPT)
        self._pubsub: PubSub | None = None
        self._known: Record | None = None  # the newest record seen
        self._known_actions: Landed = ()  # the ids it holds
        # Actions waiting for the write under way, and the task that makes the writes.
        self._queue: list[_Request] = []
        self._committer: asyncio.Task[None] | None = None
        self._delivered = -1  # the seq of the last change handed to the listeners
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # The ids of this instance's actions whose callers have not resumed yet: their
        # changes (and whatever follows them) wait in _held, so that a reply goes out
        # before its broadcast. Nothing else waits: not for an action's retries.
        self._in_flight: set[str] = set()
        self._held: list[tuple[Change, tuple[str, ...]]] = []
        self._listeners: list[Listener] = []
        self._count_listeners: list[CountListener] = []
        self._local_count = 0
        self._total: int | None = None
        self._roster: Roster = Counter()  # this instance's, kept current by its hub
        self._cluster: Roster | None = None  # every instance's, as last read
        self._fingerprint: str | None = None
        # The other instances' fingerprints that differ from this one's, and since when
        # (the shared clock); what was last logged.
        self._mismatch: frozenset[str] = frozenset()
        self._mismatch_since = 0.0
        self._mismatch_logged: frozenset[str] = frozenset()
        self._offset = 0.0  # Redis's clock minus time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._count_write: asyncio.TimerHandle | None = None
        self._closed = False
        self._closing = asyncio.Event()
        # Set when a round trip went through: Redis is back, subscribe again now rather
        # than at the end of the backoff.
        self._reachable = asyncio.Event()
        # Health: why the last round trip failed (None: it went through), why Redis
        # refuses writes (None: the last one went through), whether the subscription
        # is up, and the problem last logged (each way logged once).
        self._started = False
        self._store_trouble: str | None = None
        self._write_trouble: str | None = None
        self._subscribed = False
        self._logged_problem: str | None = None
        self.on_commit: CommitListener | None = None
        #: Told how long each transaction took (the server's latency histogram).
        self.on_latency: LatencyListener | None = None
        #: Told when Redis is lost and when it is back (the clients hear it).
        self.on_problem: Callable[[str | None], None] | None = None

    @property
    def tokens_fingerprint(self) -> str | None:
        """The fingerprint of this instance's tokens file (None: it has none), shared
        with the others through Redis: a lasting mismatch is logged."""
        return self._fingerprint

    @tokens_fingerprint.setter
    def tokens_fingerprint(self, fingerprint: str | None) -> None:
        changed = fingerprint != self._fingerprint
        self._fingerprint = fingerprint
        if changed and self._started:
            self.report_clients(self._local_count, self._roster)  # said now, not in 2 s

    @property
    def action_seconds(self) -> float:
        """An action's budget: twice the timeout (a try, and the look-up of a lost
        answer)."""
        return 2 * self.timeout

    @property
    def record(self) -> Record | None:
        """The newest record this instance has seen."""
        return self._known

    @property
    def problem(self) -> str | None:
        """Why the store cannot be used now; None while it can: the last round trip
        went through and the subscription answers its pings."""
        if not self._started:
            return "not started"
        if self._store_trouble is not None:
            return f"Redis at {safe_url(self.url)} is unreachable: {self._store_trouble}"
        if self._write_trouble is not None:
            return f"Redis at {safe_url(self.url)} refuses changes: {self._write_trouble}"
        if not self._subscribed:
            return f"not subscribed to the changes at Redis at {safe_url(self.url)}"
        return None

    # Lifecycle.

    async def start(self) -> None:
        """Connect, subscribe, and read (or create) the record.

        Raises:
            BackendUnavailable: With a sentence, if Redis cannot be reached.
        """
        try:
            async with asyncio.timeout(2 * self.timeout):
                await self._redis.ping()
                await self._subscribe()
        except (RedisError, OSError, _SubscriptionLost) as exc:
            await self._close_pubsub()
            raise BackendUnavailable(
                f"cannot reach Redis at {safe_url(self.url)}: {_reason(exc)}"
            ) from None
        try:
            outcome = await self._transact(calculation.advance)
        except BackendUnavailable:
            await self._close_pubsub()
            reason = self._store_trouble or "no answer"
            raise BackendUnavailable(
                f"cannot reach Redis at {safe_url(self.url)}: {reason}"
            ) from None
        assert outcome is not None
        if outcome.record.snapshot.step_seconds != self._step_seconds:
            logger.warning(
                "the shared calculation's step is %g s, not the %g s asked for: "
                "the calculation already in Redis keeps its own",
                outcome.record.snapshot.step_seconds,
                self._step_seconds,
            )
        self._delivered = outcome.record.seq
        self._started = True
        self._subscribed = True
        logger.info("sharing the calculation through Redis at %s", safe_url(self.url))
        self._reader = asyncio.get_running_loop().create_task(self._read_forever())
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat_forever())

    async def aclose(self) -> None:
        """Stop every timer and task, say this instance has gone: within about a second
        and a half, whether Redis answers or not."""
        self._closed = True
        self._closing.set()
        self._reachable.set()
        for request in self._queue:  # their writes never began: nothing was applied
            _settle(request, BackendUnavailable(UNREACHABLE))
        self._queue.clear()
        # First the subscription: a read waiting on it ends at once.
        await self._close_pubsub()
        if self._timer is not None:
            self._timer.cancel()
        if self._count_write is not None:
            self._count_write.cancel()
        tasks = [
            task for task in (self._reader, self._heartbeat, self._committer, *self._tasks) if task
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            # redis-py can swallow a cancellation in the middle of a command; the loops
            # also stop on _closed, and none is waited for long.
            await asyncio.wait(tasks, timeout=0.5)
        # A stalled Redis must not hold the shutdown: saying goodbye is a courtesy (the
        # count expires on its own), and closing the pool only drops sockets.
        with contextlib.suppress(RedisError, OSError):
            async with asyncio.timeout(min(self.timeout, 0.5)):
                await self._redis.hdel(self._clients_key, self.instance)
                await self._redis.hdel(self._presence_key, self.instance)
                await self._redis.publish(self._channel, json.dumps({"kind": "clients"}))
        with contextlib.suppress(RedisError, OSError):
            async with asyncio.timeout(0.5):
                await self._redis.aclose()
                # The pool was given to the client, which leaves it open: its
                # connections are closed here, not by the garbage collector later.
                await self._redis.connection_pool.disconnect()
        self._listeners.clear()
        self._count_listeners.clear()

    # The calculation.

    async def snapshot(self) -> StateSnapshot:
        return (await self._read_through()).snapshot

    async def history(self) -> tuple[Run, ...]:
        return (await self._read_through()).history

    async def start_calculation(self, by: Attribution | None = None) -> StateSnapshot:
        new_id = self._new_id()
        return await self._act(
            "start",
            lambda record, now: calculation.start(record, now, calculation_id=new_id, by=by),
        )

    async def cancel_calculation(self, by: Attribution | None = None) -> StateSnapshot:
        return await self._act("cancel", lambda record, now: calculation.cancel(record, now, by=by))

    def subscribe(self, listener: Listener) -> Unsubscribe:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def _read_through(self) -> Record:
        outcome = await self._transact(calculation.advance)
        assert outcome is not None
        return outcome.record

    # The clients count, over every instance.

    def report_clients(self, count: int, roster: Roster) -> None:
        """This instance's clients changed; the total is written soon (coalesced)."""
        self._local_count = count
        self._roster = roster
        if self._count_write is None and not self._closed:
            self._count_write = asyncio.get_running_loop().call_later(0.05, self._write_count)

    def subscribe_clients(self, listener: CountListener) -> Unsubscribe:
        self._count_listeners.append(listener)
        return lambda: (
            self._count_listeners.remove(listener) if listener in self._count_listeners else None
        )

    def _write_count(self) -> None:
        self._count_write = None
        self._spawn(self._publish_count())

    async def _publish_count(self) -> None:
        """Say this instance's count, on the shared clock: one round trip, a write."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    now = self._shared_now()
                    count = json.dumps([self._local_count, now])
                    pipe.hset(self._clients_key, self.instance, count)
                    # Apart from the count, which instances of before presence read too.
                    pipe.hset(
                        self._presence_key,
                        self.instance,
                        f'{{"at":{json.dumps(now)},"tokens":{json.dumps(self._fingerprint)},'
                        f'"roster":{roster_to_json(self._roster)}}}',
                    )
                    pipe.publish(self._channel, json.dumps({"kind": "clients"}))
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            self._round_trip_failed(exc)
        else:
            self._round_trip_ok(wrote=True)

    async def _recount(self) -> None:
        """Sum the counts that are fresh; forget those of instances gone quiet."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hgetall(self._clients_key)
                    pipe.hgetall(self._presence_key)
                    pipe.time()
                    before = time.monotonic()
                    entries, rosters, (seconds, microseconds) = await pipe.execute()
                    after = time.monotonic()
                now = self._clocked(seconds + microseconds / 1_000_000, before, after)
                total, stale = 0, []
                for instance, value in entries.items():
                    try:
                        count, at = json.loads(value)
                        fresh = now - float(at) <= COUNT_TTL_SECONDS
                    except (ValueError, TypeError):
                        fresh = False  # not ours to read: forgotten like a stale one
                    if not fresh:
                        stale.append(instance)
                    elif _text(instance) != self.instance:  # its own, the hub knows live
                        total += max(0, int(count))
                cluster, fingerprints, gone = self._read_rosters(rosters, now)
                if stale:
                    await self._redis.hdel(self._clients_key, *stale)
                if gone:
                    await self._redis.hdel(self._presence_key, *gone)
        except (RedisError, OSError) as exc:
            self._round_trip_failed(exc)
            return
        self._round_trip_ok()
        self._check_fingerprints(fingerprints, now)
        if total != self._total or cluster != self._cluster:
            self._total, self._cluster = total, cluster
            for listener in list(self._count_listeners):
                listener(total, cluster)

    def _read_rosters(
        self, entries: dict[bytes, bytes], now: float
    ) -> tuple[Roster, dict[str, str | None], list[bytes]]:
        """The other fresh instances' rosters together, and every instance's tokens
        file's fingerprint; the instances gone quiet, to forget."""
        cluster: Roster = Counter()
        fingerprints: dict[str, str | None] = {}
        gone: list[bytes] = []
        for instance, value in entries.items():
            try:
                entry = json.loads(value)
                fresh = now - float(entry["at"]) <= COUNT_TTL_SECONDS
                roster = roster_from_json(json.dumps(entry["roster"]))
                fingerprint = entry.get("tokens")
            except (ValueError, TypeError, KeyError, AttributeError):
                fresh = False  # not ours to read: forgotten like a stale one
            if not fresh:
                gone.append(instance)
                continue
            name = _text(instance)
            if name != self.instance:  # its own clients the hub knows live
                cluster.update(roster)
            fingerprints[name] = fingerprint if isinstance(fingerprint, str) else None
        return cluster, fingerprints, gone

    def _check_fingerprints(self, fingerprints: dict[str, str | None], now: float) -> None:
        """Log when other instances enforce another tokens file than this one, once
        the difference has lasted longer than an edit takes to reach them all (a
        heartbeat and two looks at the file); and when they agree again."""
        mine = self._fingerprint
        differ = frozenset(
            f"{instance}: {fingerprint or 'none'}"
            for instance, fingerprint in fingerprints.items()
            if instance != self.instance and fingerprint != mine
        )
        if differ != self._mismatch:
            self._mismatch, self._mismatch_since = differ, now
        lasting = now - self._mismatch_since >= HEARTBEAT_SECONDS + 1.5
        if differ and lasting and differ != self._mismatch_logged:
            self._mismatch_logged = differ
            logger.warning(
                "the instances sharing this calculation enforce different tokens files "
                "(this one's fingerprint: %s; %s): give every instance the same file",
                mine or "none",
                "; ".join(sorted(differ)),
                extra={"fingerprint": mine},
            )
        elif not differ and self._mismatch_logged:
            self._mismatch_logged = frozenset()
            logger.info(
                "the instances sharing this calculation enforce the same tokens file again",
                extra={"fingerprint": mine},
            )

    async def _beat_forever(self) -> None:
        """Say this instance's count, and read the total; while Redis is out of reach
        or refuses writes, try it every PROBE_SECONDS, so that readiness comes back
        soon after it does."""
        while not self._closed:
            await self._publish_count()
            await self._recount()
            troubled = self._store_trouble is not None or self._write_trouble is not None
            pause = PROBE_SECONDS if troubled else HEARTBEAT_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), pause)

    # Actions: they wait for the write under way, then go together in the next.

    async def _act(self, verb: Command, step: Callable[[Record, float], Outcome]) -> StateSnapshot:
        """Apply an action; its changes reach the listeners once its caller resumed.

        Raises:
            ActionRefused: If the state does not allow it (after the transitions it
                caught up with reached the listeners).
            BackendUnavailable: If Redis did not answer within the budget (then it
                may not be known whether the action was applied, and the sentence
                says so), or refuses changes.
        """
        loop = asyncio.get_running_loop()
        if self._closed:
            raise BackendUnavailable(UNREACHABLE)
        request = _Request(verb, step, loop.time() + self.action_seconds, loop.create_future())
        self._in_flight.add(request.id)
        self._queue.append(request)
        if self._committer is None:
            self._committer = loop.create_task(self._commit_queued())
        try:
            result = await request.future
        finally:
            self._in_flight.discard(request.id)
            loop.call_soon(self._release)
        if isinstance(result, StateSnapshot):
            return result  # an earlier try landed: this is its state
        if result.refused is not None:
            # The transitions it caught up with reach every listener before the
            # refusal reaches its caller.
            self._release()
            await self._delivery_of(result.record.seq)
            raise result.refused
        return result.record.snapshot

    async def _commit_queued(self) -> None:
        """Write the waiting actions, MAX_BATCH at a time, until none waits."""
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._transact(requests=batch)
                except BackendUnavailable as exc:
                    for request in batch:
                        _settle(request, exc)
                except Exception as exc:  # a bug: the callers hear of it, as their own
                    logger.exception("writing %d actions to Redis failed", len(batch))
                    for request in batch:
                        _settle(request, exc)
        finally:
            self._committer = None

    # Transactions.

    async def _transact(
        self,
        step: Callable[[Record, float], Outcome] | None = None,
        *,
        requests: list[_Request] | None = None,
    ) -> Outcome | None:
        """Apply ``step``, or the actions of ``requests`` one after the other, to the
        stored record atomically, trying again on a conflict or a lost answer, within
        twice :attr:`timeout` (the requests' own budget, when they waited).

        Returns:
            The outcome of ``step`` (computed, when it changed nothing); None for
            requests, whose callers get each their own outcome.

        Raises:
            BackendUnavailable: Redis did not answer in time, or refuses changes.
        """
        began = time.perf_counter()
        try:
            return await self._transact_within(step, requests or [])
        finally:
            if self.on_latency is not None:
                self.on_latency(time.perf_counter() - began)

    async def _transact_within(
        self, step: Callable[[Record, float], Outcome] | None, requests: list[_Request]
    ) -> Outcome | None:
        loop = asyncio.get_running_loop()
        deadline = min(
            (request.deadline for request in requests), default=loop.time() + self.action_seconds
        )
        pending = [request for request in requests if not request.future.done()]
        unknown = False  # a write of ours may have landed without our hearing it
        failures = 0
        read: tuple[str | None, float] | None = None
        while True:
            if requests and not pending:
                return None
            remaining = deadline - loop.time()
            if remaining <= 0 or (failures >= MAX_FAILURES and not unknown):
                raise self._unavailable(unknown and bool(requests), pending)
            writing = False
            try:
                async with asyncio.timeout(min(self.timeout, remaining)):
                    if read is None:
                        raw, now, landed = await self._read([r.id for r in pending])
                        self._round_trip_ok()
                        pending = self._resolve_landed(pending, raw, landed)
                        read = (raw, now)
                        continue
                    raw, now = read
                    stored, stored_actions = self._decode(raw)
                    if not requests:
                        self._catch_up(stored, stored_actions)
                    record = self._newest(stored, now)
                    actions = stored_actions if record is stored else self._known_actions
                    outcome, each = _apply(step, pending, record, now)
                    if stored is not None and stored == outcome.record:
                        self._learn(outcome.record, actions)
                        _settle_all(pending, each)
                        return outcome  # nothing to write
                    accepted = [r for r, o in zip(pending, each, strict=True) if o.refused is None]
                    text = _stored_text(outcome.record, _landed(actions, pending, each))
                    writing = True
                    reply = await self._cas(
                        keys=[self._key, *(self._actions_prefix + r.id for r in accepted)],
                        args=[
                            raw or "",
                            text,
                            self._channel,
                            _payload(text, outcome, accepted) if outcome.changes else "",
                            ACTION_ID_TTL_MS,
                            *(
                                json.dumps(snapshot_to_json(o.record.snapshot))
                                for r, o in zip(pending, each, strict=True)
                                if o.refused is None
                            ),
                        ],
                    )
                    self._round_trip_ok(wrote=True)
            except ResponseError as exc:
                # Redis answered, and refused (out of memory, a read-only replica):
                # nothing was written, and trying again now would not help.
                self._writes_refused(exc)
                raise BackendUnavailable(
                    f"The shared state store refuses changes ({_reason(exc)}); try again shortly."
                ) from None
            except (RedisError, OSError) as exc:  # OSError: TimeoutError included
                self._round_trip_failed(exc)
                unknown = unknown or writing
                failures += 1
                read = None
                # A refused connection fails at once: not a busy loop until the deadline.
                await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
                continue
            kind = int(reply[0])
            if kind == 2:
                read = None  # one of them landed unheard: look them up
                continue
            if kind == 0:
                # Another instance wrote first: again, at once, from what it wrote.
                read = (_text(reply[1]) or None, self._time_of(reply[2], reply[3]))
                continue
            self._committed(outcome, stored, record, text, accepted)
            _settle_all(pending, each)
            return outcome

    def _unavailable(self, unknown: bool, pending: list[_Request]) -> BackendUnavailable:
        """Why the budget ran out, truthfully: an action written without an answer may
        or may not have been applied."""
        if unknown and pending:
            verbs = " and ".join(sorted({request.verb for request in pending}))
            return BackendUnavailable(
                f"The shared state store did not answer in time: the {verbs} may or may "
                "not have been applied; the state everyone is sent will tell."
            )
        return BackendUnavailable(UNREACHABLE)

    def _resolve_landed(
        self, pending: list[_Request], raw: str | None, landed: dict[str, StateSnapshot]
    ) -> list[_Request]:
        """Acknowledge the requests an earlier try wrote unheard; the others go on.
        An id is looked for under its own key, in the record Redis holds, and, if
        Redis lost that (restarted empty), in the newest record this instance knows."""
        if not pending:
            return pending
        stored, stored_actions = self._decode(raw)
        found = dict(stored_actions)
        if stored is None or (self._known is not None and stored.seq < self._known.seq):
            found.update(self._known_actions)
        found.update(landed)
        remaining = []
        for request in pending:
            if request.id in found:
                _settle(request, found[request.id])
            else:
                remaining.append(request)
        return remaining

    def _committed(
        self,
        outcome: Outcome,
        stored: Record | None,
        record: Record,
        text: str,
        accepted: list[_Request],
    ) -> None:
        """What follows a write that went through."""
        if outcome.changes and self.on_commit is not None:
            self.on_commit(outcome.changes)  # committed here, counted here only
        if outcome.changes and outcome.changes[0].seq == self._delivered + 1:
            # This instance's own changes reach its clients at once, not only through
            # the channel: while the subscription is down (Redis came back a moment
            # ago), the transitions its timers apply are not lost. The channel's copy
            # is then dropped as already seen; a change that does not follow the last
            # one delivered waits for the channel, in order.
            self._deliver(changes_of(outcome), actions=tuple(r.id for r in accepted))
        if (stored is not None and record is not stored) or (stored is None and record.seq > 0):
            # Only now is it sure: the record was still what was read, so Redis really
            # had lost the newer state (a restart without persistence, a failover).
            logger.warning(
                "Redis %s: restored the last state known here (seq %d)",
                "had lost the calculation"
                if stored is None
                else f"held an older state of the calculation (seq {stored.seq})",
                record.seq,
            )
        _, actions = self._decode(text)
        self._learn(outcome.record, actions)

    async def _read(self, ids: list[str]) -> tuple[str | None, float, dict[str, StateSnapshot]]:
        """The record as stored (its exact text), Redis's time, and the state each of
        ``ids`` left if an earlier try of it landed: one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._key)
            pipe.time()
            if ids:
                pipe.mget([self._actions_prefix + each for each in ids])
            before = time.monotonic()
            replies = await pipe.execute()
            after = time.monotonic()
        raw = _text(replies[0]) if replies[0] is not None else None
        seconds, microseconds = replies[1]
        now = self._clocked(seconds + microseconds / 1_000_000, before, after)
        landed = {}
        if ids:
            for each, value in zip(ids, replies[2], strict=True):
                if value is not None:
                    landed[each] = snapshot_from_json(json.loads(value))
        return raw, now, landed

    def _time_of(self, seconds: Any, microseconds: Any) -> float:
        """Redis's time as the script read it."""
        if self._clock is not None:
            return self._clock.now()
        return int(seconds) + int(microseconds) / 1_000_000

    def _clocked(self, redis_now: float, before: float, after: float) -> float:
        """The shared time: Redis's (and its offset from ours), or the test's clock."""
        if self._clock is not None:
            return self._clock.now()
        self._offset = redis_now - (before + after) / 2
        return redis_now

    def _newest(self, stored: Record | None, now: float) -> Record:
        """What the transition starts from: the stored record, unless this instance
        knows a newer one (Redis lost it): seq never goes backwards."""
        known = self._known
        if stored is not None and (known is None or stored.seq >= known.seq):
            return stored
        if known is not None:
            return known
        return calculation.initial_record(self._step_seconds, now)

    def _decode(self, raw: str | None) -> tuple[Record | None, Landed]:
        """The record in a stored text, and the ids of the recent actions it holds."""
        if raw is None:
            return None, ()
        try:
            payload = json.loads(raw)
            record = Record.from_json(payload)
        except ValueError as exc:
            logger.error("the record in Redis is unreadable (%s): it is replaced", exc)
            return None, ()
        return record, _recent_actions(payload.get("actions"))

    def _shared_now(self) -> float:
        if self._clock is not None:
            return self._clock.now()
        return time.monotonic() + self._offset

    def _catch_up(self, stored: Record | None, actions: Landed) -> None:
        """A record read that holds the change after the last one delivered: another
        instance committed it (a deadline this instance also tried to apply). Its
        clients get it now, not only when the channel brings it: a subscription that
        died in silence costs them nothing while the timers run."""
        if stored is None or stored.seq != self._delivered + 1 or not self._started:
            return
        self._learn(stored, actions)
        snapshot = stored.snapshot
        self._deliver([Change(snapshot, stored.history if snapshot.state.is_final else None)])

    # Changes, from the channel to the listeners.

    async def _subscribe(self) -> None:
        """Subscribe, and wait for Redis to confirm it."""
        pubsub = self._redis.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(self._channel)
        async with asyncio.timeout(self.timeout):
            while True:
                message = await pubsub.get_message(timeout=self.timeout)
                if message is not None and message.get("type") == "subscribe":
                    return

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            # A black-holed connection must not hold this up: closing only drops it.
            with contextlib.suppress(RedisError, OSError):
                async with asyncio.timeout(0.5):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def _read_forever(self) -> None:
        """Hand every published change to the listeners. A subscription silent for
        :attr:`timeout` is pinged; one that stays silent another :attr:`timeout` is
        dead, even if its socket says nothing (a black hole, a stalled Redis): it is
        made again with backoff, and the record read to carry on from it."""
        loop = asyncio.get_running_loop()
        delay = 0.1
        heard = loop.time()
        #: When the silent subscription was pinged, if it was.
        pinged: float | None = None
        while not self._closed:
            try:
                if self._pubsub is None:
                    async with asyncio.timeout(self.timeout):
                        await self._subscribe()
                    await self._resync()
                    self._set_subscribed(True)
                    delay, heard, pinged = 0.1, loop.time(), None
                assert self._pubsub is not None
                now = loop.time()
                if pinged is None and now - heard >= self.timeout:
                    await self._pubsub.ping(PING_PAYLOAD)
                    pinged = now
                if pinged is not None and now - pinged >= self.timeout:
                    # Lost only if the ping had its whole time to be answered: a loop too
                    # busy to read for a while is not a silent Redis, so what came
                    # meanwhile (the pong) is read first, without waiting.
                    message = await self._pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=0
                    )
                    if message is None:
                        raise _SubscriptionLost(
                            f"the subscription answered no ping for {now - pinged:.1f} s"
                        )
                else:
                    deadline = (heard if pinged is None else pinged) + self.timeout
                    message = await self._pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=max(0.01, deadline - now)
                    )
                    if message is None:
                        continue
                heard, pinged = loop.time(), None
                self._round_trip_ok()
                if message.get("type") == "message":
                    self._on_message(message["data"])
            except (RedisError, OSError, BackendUnavailable, _SubscriptionLost) as exc:
                if self._closed:
                    return
                self._round_trip_failed(exc)
                self._set_subscribed(False)
                await self._close_pubsub()
                self._reachable.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reachable.wait(), delay)
                delay = min(delay * 2, 1.0)
            except Exception:  # a bug must not end the subscription for good
                logger.exception("handling a message from Redis failed")

    async def _resync(self) -> None:
        """After a gap: the latest state, whatever came in between; but when the clock
        alone made the changes since the last one delivered, those changes, each once
        (a run of this instance's that came due while Redis was away, committed by its
        timer before the subscription was made again, so never heard on it)."""
        last = self._known
        latest = await self._read_through()
        if latest.seq > self._delivered:
            if last is not None and last.seq == self._delivered:
                caught_up = calculation.advance(last, latest.snapshot.changed_at)
                if caught_up.record == latest:
                    self._deliver(changes_of(caught_up))
                    await self._recount()
                    return
            self._deliver([Change(latest.snapshot, latest.history)])
        await self._recount()

    def _on_message(self, data: bytes) -> None:
        payload = json.loads(data)
        if payload.get("kind") == "clients":
            self._spawn(self._recount())
            return
        record = Record.from_json(payload["record"])
        changes = tuple(snapshot_from_json(change) for change in payload["changes"])
        actions = payload.get("actions")
        ids = tuple(a for a in actions if isinstance(a, str)) if isinstance(actions, list) else ()
        self._learn(record, _recent_actions(payload["record"].get("actions")))
        self._deliver(changes_of(Outcome(record, changes)), actions=ids)

    def _deliver(self, changes: list[Change], *, actions: tuple[str, ...] = ()) -> None:
        """Hand changes to the listeners, in seq order, each once; those of actions
        whose callers have not resumed wait, and so does whatever follows them."""
        if self._held or any(each in self._in_flight for each in actions):
            self._held.extend((change, actions) for change in changes)
            return
        self._hand_over(changes)

    def _release(self) -> None:
        """Hand over what waited, up to the first change of an action still in flight."""
        if not self._held:
            return
        # The channel's copy and the committer's own may both be here, in any order.
        held = sorted(self._held, key=lambda item: item[0].snapshot.seq)
        ready = 0
        while ready < len(held) and not any(each in self._in_flight for each in held[ready][1]):
            ready += 1
        self._held = held[ready:]
        self._hand_over([change for change, _ in held[:ready]])

    def _hand_over(self, changes: list[Change]) -> None:
        for change in changes:
            if change.snapshot.seq <= self._delivered:
                continue
            self._delivered = change.snapshot.seq
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:
                    logger.exception("a state listener failed on seq %d", change.snapshot.seq)
        for seq, waiter in list(self._waiters):
            if seq <= self._delivered and not waiter.done():
                waiter.set_result(None)
        self._waiters = [(seq, w) for seq, w in self._waiters if not w.done()]

    async def _delivery_of(self, seq: int) -> None:
        if seq <= self._delivered:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, waiter))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, self.timeout)

    def _learn(self, record: Record, actions: Landed | None = None) -> None:
        """The newest record seen (and the ids of the actions it holds, when known)."""
        if self._known is None or record.seq >= self._known.seq:
            if actions is not None or self._known is None or record.seq > self._known.seq:
                self._known_actions = actions or ()
            self._known = record
            self._reschedule()

    # Timers.

    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._known is None or self._closed:
            return
        deadline = calculation.next_deadline(self._known)
        if deadline is None:
            return
        delay = max(0.0, deadline - self._shared_now())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        self._spawn(self._advance_at_deadline())

    async def _advance_at_deadline(self) -> None:
        try:
            await self._transact(calculation.advance)
        except BackendUnavailable:
            if not self._closed:  # tried again once Redis is back, or in a moment
                self._timer = asyncio.get_running_loop().call_later(
                    PROBE_SECONDS, self._on_deadline
                )

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Health.

    def _round_trip_ok(self, *, wrote: bool = False) -> None:
        """Redis answered (and, ``wrote``, took a write): what was wrong is over."""
        if self._store_trouble is not None or (wrote and self._write_trouble is not None):
            self._store_trouble = None
            if wrote:
                self._write_trouble = None
            self._reachable.set()
            self._health_changed()

    def _round_trip_failed(self, exc: BaseException) -> None:
        if isinstance(exc, ResponseError):
            self._writes_refused(exc)  # it answered: not out of reach
            return
        if self._store_trouble is None and not self._closed:
            self._store_trouble = _reason(exc)
            self._health_changed()

    def _writes_refused(self, exc: BaseException) -> None:
        """Redis answers, but refuses changes (out of memory, a read-only replica):
        not ready until a write goes through again."""
        if self._write_trouble is None and not self._closed:
            self._write_trouble = _reason(exc)
            self._health_changed()

    def _set_subscribed(self, subscribed: bool) -> None:
        if subscribed != self._subscribed:
            self._subscribed = subscribed
            self._health_changed()

    def _health_changed(self) -> None:
        """Log the store's health once each way: lost, then back."""
        if not self._started or self._closed:
            return
        problem = self.problem
        turned = (problem is None) != (self._logged_problem is None)
        if problem is not None and self._logged_problem is None:
            logger.error("%s; actions are refused until it is back", problem)
        elif problem is None and self._logged_problem is not None:
            logger.warning("Redis at %s is reachable again", safe_url(self.url))
        self._logged_problem = problem
        if turned and self.on_problem is not None:
            self.on_problem(problem)


#: What an action gets while Redis cannot be reached.
UNREACHABLE = "The shared state store is unreachable; try again shortly."


def _payload(text: str, outcome: Outcome, accepted: list[_Request]) -> str:
    """What the channel carries: the changes, the stored text after them (the record and
    its recent actions), and the ids of the actions that made them (their instance
    holds them until each caller has its reply)."""
    return json.dumps(
        {
            "kind": "change",
            "record": json.loads(text),
            "changes": [snapshot_to_json(snapshot) for snapshot in outcome.changes],
            "actions": [request.id for request in accepted],
        }
    )


def _stored_text(record: Record, actions: Landed) -> str:
    """What the record's key holds: the record, and the recent actions' ids."""
    return json.dumps(
        {
            **record.to_json(),
            "actions": [[each, snapshot_to_json(state)] for each, state in actions],
        }
    )


def _recent_actions(value: Any) -> Landed:
    """Read the recent actions of a stored text; anything unreadable is left out."""
    if not isinstance(value, list):
        return ()
    found = []
    for item in value[:RECENT_ACTIONS]:
        try:
            each, state = item
            if isinstance(each, str):
                found.append((each, snapshot_from_json(state)))
        except (ValueError, TypeError):
            continue
    return tuple(found)


def _landed(actions: Landed, requests: list[_Request], outcomes: list[Outcome]) -> Landed:
    """The recent actions after a write: those it accepts first, newest first."""
    new = [
        (request.id, outcome.record.snapshot)
        for request, outcome in zip(requests, outcomes, strict=True)
        if outcome.refused is None
    ]
    return (*reversed(new), *actions)[:RECENT_ACTIONS]


def _apply(
    step: Callable[[Record, float], Outcome] | None,
    requests: list[_Request],
    record: Record,
    now: float,
) -> tuple[Outcome, list[Outcome]]:
    """``step``, or each request's action in turn, from ``record``: the outcome of them
    all (its changes in order), and each request's own."""
    if step is not None:
        return step(record, now), []
    each: list[Outcome] = []
    changes: list[StateSnapshot] = []
    for request in requests:
        outcome = request.step(record, now)
        each.append(outcome)
        changes.extend(outcome.changes)
        record = outcome.record
    if not each:
        return calculation.advance(record, now), []
    return Outcome(record, tuple(changes)), each


def _settle(request: _Request, result: Outcome | StateSnapshot | BaseException) -> None:
    """Give a request's caller its outcome (or the reason it has none)."""
    if request.future.done():
        return  # its caller gave up waiting
    if isinstance(result, BaseException):
        request.future.set_exception(result)
    else:
        request.future.set_result(result)


def _settle_all(requests: list[_Request], outcomes: list[Outcome]) -> None:
    for request, outcome in zip(requests, outcomes, strict=True):
        _settle(request, outcome)


def _lean_connections() -> dict[str, Any]:
    """Connection options that save round trips when a connection is made: RESP2 (no
    HELLO), no CLIENT SETINFO, no maintenance notifications. An instance far from
    Redis pays each of them, and pays them again for each connection made after a
    timeout. Only what the installed redis-py knows of."""
    parameters: set[str] = set()
    for cls in aioredis.Connection.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            parameters.update(inspect.signature(inspect.unwrap(init)).parameters)
    options: dict[str, Any] = {}
    if "protocol" in parameters:
        options["protocol"] = 2
    if "driver_info" in parameters:
        options["driver_info"] = None
    elif "lib_name" in parameters:
        options["lib_name"] = options["lib_version"] = None
    if "maint_notifications_config" in parameters:
        from redis.maint_notifications import MaintNotificationsConfig

        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    return options


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer in time"
    # Redis names the script that met an error: of no use to a person.
    text = str(exc).split(". script: ")[0].strip().rstrip(".")
    return text[:200] or type(exc).__name__
