"""The Redis backend: one calculation shared by every server instance that uses it.

The record (:class:`~progress_server.calculation.Record`) lives under one key. Every
change is an optimistic transaction: WATCH the key, read it and Redis's clock, apply
the same pure transition the memory backend applies, then MULTI / SET / PUBLISH /
EXEC. If another instance changed the key in between, EXEC fails and the transition is
computed again from what it wrote; so of two starts at the same moment exactly one
wins, seq grows by one per change across the cluster, and a change is published in
the same atomic step that stores it. The rules stay in Python, written once: there is
no Lua copy of them to drift.

Deadlines are times on Redis's clock (``TIME``), stored in the record, so every
instance computes the same ones whatever its own clock says. Every instance arms a
timer for the next deadline and tries to advance when it fires: the first EXEC wins,
the others find nothing due. No instance is special, so losing any of them loses no
transition.

Every instance hears the changes on one channel, in commit order, and hands them to
its listeners; after a gap (its subscription was lost) it reads the record and hands
over the latest state. If Redis forgets the record (restarted without persistence),
the instances write back the newest one they know: seq never goes backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .. import calculation
from ..calculation import (
    DEFAULT_STEP_SECONDS,
    Attribution,
    Clock,
    Outcome,
    Record,
    Run,
    StateSnapshot,
    new_calculation_id,
    snapshot_from_json,
    snapshot_to_json,
)
from .base import (
    BackendUnavailable,
    Change,
    CommitListener,
    CountListener,
    Listener,
    Unsubscribe,
    changes_of,
)

try:
    import redis.asyncio as aioredis
    from redis.asyncio.client import PubSub
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError, WatchError
except ImportError:  # pragma: no cover - the extra is not installed
    aioredis = None  # type: ignore[assignment]

__all__ = ["DEFAULT_PREFIX", "RedisBackend", "safe_url"]

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "progress:"

#: How often an instance says how many clients it has, and how long a count is
#: believed without news (an instance that died stops counting after that).
HEARTBEAT_SECONDS = 2.0
COUNT_TTL_SECONDS = 10.0


def safe_url(url: str) -> str:
    """The URL without its password, for logs and error sentences."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisBackend:
    """The calculation's record in Redis, moved by the pure transitions.

    Args:
        url: ``redis://`` or ``rediss://``, with the password in it if there is one.
        prefix: Put before every key and channel, so deployments can share a Redis.
        step_seconds: The step of a calculation this instance creates; a record that
            already exists keeps its own.
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
        self._step_seconds = step_seconds
        self._clock = clock
        self._new_id = new_id
        self.instance = instance or new_calculation_id()
        self._key = f"{prefix}record"
        self._channel = f"{prefix}events"
        self._clients_key = f"{prefix}clients"
        # Fail fast: the backend reconnects by itself, with its own backoff.
        self._redis = aioredis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=5,
        )
        self._pubsub: PubSub | None = None
        self._known: Record | None = None  # the newest record seen
        self._delivered = -1  # the seq of the last change handed to the listeners
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # While an action is under way, what the channel brings waits: the action's
        # own changes must reach the listeners after its caller has resumed.
        self._acting = 0
        self._held: list[Change] = []
        self._listeners: list[Listener] = []
        self._count_listeners: list[CountListener] = []
        self._local_count = 0
        self._total: int | None = None
        self._offset = 0.0  # Redis's clock minus time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._count_write: asyncio.TimerHandle | None = None
        self._closed = False
        self._closing = asyncio.Event()
        # Set when a transaction went through: Redis is back, resubscribe now rather
        # than at the end of the backoff.
        self._reachable = asyncio.Event()
        #: Told how long each transaction took (the server's latency histogram).
        self.latency_observer: Callable[[float], None] | None = None
        self.on_commit: CommitListener | None = None
        #: Why the store cannot be used now; None while it can.
        self.problem: str | None = "not started"

    @property
    def step_seconds(self) -> float:
        return self._known.snapshot.step_seconds if self._known else self._step_seconds

    @property
    def record(self) -> Record | None:
        """The newest record this instance has seen."""
        return self._known

    # Lifecycle.

    async def start(self) -> None:
        """Connect, subscribe, and read (or create) the record.

        Raises:
            BackendUnavailable: With a sentence, if Redis cannot be reached.
        """
        try:
            await self._redis.ping()
            await self._subscribe()
            outcome = await self._transact(calculation.advance)
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(
                f"cannot reach Redis at {safe_url(self.url)}: {_reason(exc)}"
            ) from None
        if outcome.record.snapshot.step_seconds != self._step_seconds:
            logger.warning(
                "the shared calculation's step is %g s, not the %g s asked for: "
                "the calculation already in Redis keeps its own",
                outcome.record.snapshot.step_seconds,
                self._step_seconds,
            )
        self._delivered = outcome.record.seq
        self.problem = None
        logger.info("sharing the calculation through Redis at %s", safe_url(self.url))
        self._reader = asyncio.get_running_loop().create_task(self._read_forever())
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat_forever())

    async def aclose(self) -> None:
        self._closed = True
        self._closing.set()
        self._reachable.set()
        # First the subscription: a read waiting on it ends at once.
        await self._close_pubsub()
        if self._timer is not None:
            self._timer.cancel()
        if self._count_write is not None:
            self._count_write.cancel()
        tasks = [task for task in (self._reader, self._heartbeat, *self._tasks) if task]
        for task in tasks:
            task.cancel()
        if tasks:
            # redis-py can swallow a cancellation in the middle of a command; the loops
            # also stop on _closed, and none is waited for long.
            await asyncio.wait(tasks, timeout=1.0)
        with contextlib.suppress(RedisError, OSError):
            await self._redis.hdel(self._clients_key, self.instance)
            await self._redis.publish(self._channel, json.dumps({"kind": "clients"}))
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()
        self._listeners.clear()
        self._count_listeners.clear()

    # The calculation.

    async def snapshot(self) -> StateSnapshot:
        return (await self._checked(calculation.advance)).record.snapshot

    async def history(self) -> tuple[Run, ...]:
        return (await self._checked(calculation.advance)).record.history

    async def start_calculation(self, by: Attribution | None = None) -> StateSnapshot:
        new_id = self._new_id()
        return await self._act(
            lambda record, now: calculation.start(record, now, calculation_id=new_id, by=by)
        )

    async def cancel_calculation(self, by: Attribution | None = None) -> StateSnapshot:
        return await self._act(lambda record, now: calculation.cancel(record, now, by=by))

    def subscribe(self, listener: Listener) -> Unsubscribe:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # The clients count, over every instance.

    def report_clients(self, count: int) -> None:
        """This instance's clients changed; the total is written soon (coalesced)."""
        self._local_count = count
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
        with contextlib.suppress(RedisError, OSError):
            now = await self._now(self._redis)
            await self._redis.hset(
                self._clients_key, self.instance, json.dumps([self._local_count, now])
            )
            await self._redis.publish(self._channel, json.dumps({"kind": "clients"}))

    async def _recount(self) -> None:
        """Sum the counts that are fresh; forget those of instances gone quiet."""
        with contextlib.suppress(RedisError, OSError, ValueError, TypeError):
            entries = await self._redis.hgetall(self._clients_key)
            now = await self._now(self._redis)
            total, stale = 0, []
            for instance, value in entries.items():
                count, at = json.loads(value)
                if now - float(at) > COUNT_TTL_SECONDS:
                    stale.append(instance)
                else:
                    total += max(0, int(count))
            if stale:
                await self._redis.hdel(self._clients_key, *stale)
            if total != self._total:
                self._total = total
                for listener in list(self._count_listeners):
                    listener(total)

    async def _beat_forever(self) -> None:
        while not self._closed:
            await self._publish_count()
            await self._recount()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), HEARTBEAT_SECONDS)

    # Transactions.

    async def _checked(self, step: Callable[[Record, float], Outcome]) -> Outcome:
        try:
            return await self._transact(step)
        except (RedisError, OSError) as exc:
            self._went_down(exc)
            raise BackendUnavailable(self._sentence()) from None

    async def _act(self, step: Callable[[Record, float], Outcome]) -> StateSnapshot:
        self._acting += 1
        try:
            outcome = await self._checked(step)
        finally:
            self._acting -= 1
        if outcome.refused is not None:
            # The transitions it caught up with reach every listener before the
            # refusal reaches its caller (they come back through the channel).
            self._release()
            if outcome.changes:
                await self._delivery_of(outcome.changes[-1].seq)
            raise outcome.refused
        # An accepted action's changes follow once its caller has resumed.
        asyncio.get_running_loop().call_soon(self._release)
        return outcome.record.snapshot

    def _release(self) -> None:
        if self._acting == 0 and self._held:
            held, self._held = self._held, []
            self._deliver(held)

    async def _transact(self, step: Callable[[Record, float], Outcome]) -> Outcome:
        """Apply ``step`` to the stored record atomically; retried on a conflict."""
        began = time.perf_counter()
        try:
            return await self._transact_once(step)
        finally:
            if self.latency_observer is not None:
                self.latency_observer(time.perf_counter() - began)

    async def _transact_once(self, step: Callable[[Record, float], Outcome]) -> Outcome:
        while True:
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(self._key)
                    stored = self._decode(await pipe.get(self._key))
                    now = await self._now(pipe)
                    record = self._newest(stored, now)
                    restored = (record is not stored and stored is not None) or (
                        stored is None and record.seq > 0
                    )
                    outcome = step(record, now)
                    if stored is not None and stored == outcome.record:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]  # nothing to do
                        self._reachable.set()
                        self._learn(outcome.record)
                        return outcome
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(self._key, json.dumps(outcome.record.to_json()))
                    if outcome.changes:
                        pipe.publish(self._channel, _payload(outcome))
                    await pipe.execute()
                except WatchError:
                    continue  # another instance changed it first: again, from its record
            self._reachable.set()
            if outcome.changes and self.on_commit is not None:
                self.on_commit(outcome.changes)  # committed here, counted here only
            if outcome.changes and outcome.changes[0].seq == self._delivered + 1:
                # This instance's own changes reach its clients at once, not only
                # through the channel: while the subscription is down (Redis came back
                # a moment ago), the transitions its timers apply are not lost. The
                # channel's copy is then dropped as already seen; a change that does
                # not follow the last one delivered waits for the channel, in order.
                self._deliver(changes_of(outcome))
            if restored:
                # Only now is it sure: the key did not change under us, so Redis really
                # had lost the newer state (a restart without persistence, a failover).
                logger.warning(
                    "Redis %s: restored the last state known here (seq %d)",
                    "had lost the calculation"
                    if stored is None
                    else f"held an older state of the calculation (seq {stored.seq})",
                    record.seq,
                )
            self._learn(outcome.record)
            return outcome

    def _newest(self, stored: Record | None, now: float) -> Record:
        """What the transition starts from: the stored record, unless this instance
        knows a newer one (Redis lost it): seq never goes backwards."""
        known = self._known
        if stored is not None and (known is None or stored.seq >= known.seq):
            return stored
        if known is not None:
            return known
        return calculation.initial_record(self._step_seconds, now)

    def _decode(self, raw: bytes | str | None) -> Record | None:
        if raw is None:
            return None
        try:
            return Record.from_json(json.loads(raw))
        except ValueError as exc:
            logger.error("the record in Redis is unreadable (%s): it is replaced", exc)
            return None

    async def _now(self, redis: Any) -> float:
        """Redis's clock (the one every instance shares), and its offset from ours."""
        if self._clock is not None:
            return self._clock.now()
        before = time.monotonic()
        seconds, microseconds = await redis.time()
        after = time.monotonic()
        now = seconds + microseconds / 1_000_000
        self._offset = now - (before + after) / 2
        return float(now)

    def _shared_now(self) -> float:
        if self._clock is not None:
            return self._clock.now()
        return time.monotonic() + self._offset

    # Changes, from the channel to the listeners.

    async def _subscribe(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._channel)
        self._pubsub = pubsub

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def _read_forever(self) -> None:
        """Hand every published change to the listeners; after a loss, reconnect with
        backoff, read the record, and carry on from it."""
        delay = 0.1
        while not self._closed:
            try:
                if self._pubsub is None:
                    await self._subscribe()
                    await self._resync()
                    self._came_back()
                    delay = 0.1
                assert self._pubsub is not None
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
                if message is not None and message.get("type") == "message":
                    self._on_message(message["data"])
            except (RedisError, OSError) as exc:
                self._went_down(exc)
                await self._close_pubsub()
                self._reachable.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reachable.wait(), delay)
                delay = min(delay * 2, 2.0)
            except Exception:  # a bug must not end the subscription for good
                logger.exception("handling a message from Redis failed")

    async def _resync(self) -> None:
        outcome = await self._transact(calculation.advance)
        latest = outcome.record
        if latest.seq > self._delivered:
            # What came in between is gone: the latest state is what matters.
            history = latest.history
            self._deliver([Change(latest.snapshot, history)])
        await self._recount()

    def _on_message(self, data: bytes) -> None:
        payload = json.loads(data)
        if payload.get("kind") == "clients":
            self._spawn(self._recount())
            return
        record = Record.from_json(payload["record"])
        changes = tuple(snapshot_from_json(change) for change in payload["changes"])
        self._learn(record)
        self._deliver(changes_of(Outcome(record, changes)))

    def _deliver(self, changes: list[Change]) -> None:
        if self._acting:
            self._held.extend(changes)
            return
        if self._held:
            # Held for an action whose caller has not resumed yet: they come first, or
            # a later change from the channel would overtake them and they would be
            # dropped as already seen.
            changes = sorted([*self._held, *changes], key=lambda change: change.snapshot.seq)
            self._held = []
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
            await asyncio.wait_for(waiter, 2.0)

    def _learn(self, record: Record) -> None:
        if self._known is None or record.seq >= self._known.seq:
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
        except (RedisError, OSError) as exc:
            self._went_down(exc)
            if not self._closed:  # tried again once Redis is back, or in a moment
                self._timer = asyncio.get_running_loop().call_later(0.5, self._on_deadline)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Health.

    def _went_down(self, exc: BaseException) -> None:
        if self.problem is None and not self._closed:
            self.problem = f"Redis at {safe_url(self.url)} is unreachable: {_reason(exc)}"
            logger.error("%s; actions are refused until it is back", self.problem)

    def _came_back(self) -> None:
        if self.problem is not None:
            self.problem = None
            logger.warning("Redis at %s is reachable again", safe_url(self.url))

    def _sentence(self) -> str:
        return "The shared state store is unreachable; try again shortly."


def _payload(outcome: Outcome) -> str:
    """What the channel carries: the changes, and the record after them."""
    return json.dumps(
        {
            "kind": "change",
            "record": outcome.record.to_json(),
            "changes": [snapshot_to_json(snapshot) for snapshot in outcome.changes],
        }
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return text[:200] or type(exc).__name__
