"""The connected clients of one server instance and the fan-out of every change to them.

Every write here is synchronous (a frame is queued on each transport and the call
returns): the calculation never awaits a client, so a slow client cannot delay the
others, and no change can slip in between a client's joining and the snapshot it is
sent.

Slow clients are *conflated*: every state message is a full snapshot, so a client
with more than ``send_buffer_limit`` bytes waiting is skipped, and once its buffer
drains it gets only the latest state (and count). One that stays over the limit for
``stuck_timeout`` seconds is disconnected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from progress_protocol.messages import Clients, History, Presence, StateMessage, Store, encode
from progress_protocol.states import Run, StateSnapshot

from .calculation import Change
from .metrics import Metrics
from .presence import Key, Roster, key_of, presence_of
from .transport.frames import text_frame
from .users import User

__all__ = ["Client", "Hub", "plural"]

logger = logging.getLogger(__name__)


def plural(count: int, noun: str) -> str:
    """``1 client``, ``2 clients``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


#: A ``clients`` count waits at least this many times as long as the last one took to
#: send: counts take at most 1/40 of the CPU, whatever the machine.
COUNT_COST_FACTOR = 40


class Client(Protocol):
    """What the hub needs of a connected client: a
    :class:`~progress_server.transport.connection.GuardedConnection` is one."""

    @property
    def short_id(self) -> str:
        """Names the client in the log."""

    @property
    def writable(self) -> bool:
        """Open and not cut off: frames may be written."""

    @property
    def transport(self) -> asyncio.WriteTransport:
        """Where its frames go; its buffer says whether it keeps up."""

    def write(self, data: bytes) -> None:
        """Write whole frames (with the handshake's response when it is held back)."""

    def abort(self) -> None:
        """Cut the connection now, discarding whatever is queued."""

    @property
    def user(self) -> User | None:
        """Who it is, for presence (None: an unnamed operator)."""


#: Presence's key of a client the server knows nothing of.
ANONYMOUS: Key = (None, "operator", "other")


class Hub:
    """Keeps the set of connected clients and the last state they were sent.

    Args:
        initial: The calculation's state when the server starts.
        history: The finished calculations when the server starts, newest first.
        send_buffer_limit: Bytes waiting for one client past which it is skipped.
        stuck_timeout: Seconds a client may stay past the limit before it is closed.
        count_interval: Seconds at least between two ``clients`` broadcasts: when a
            thousand terminals reconnect at once, everyone gets a few counts, not a
            thousand (which would cost a million writes). It grows with the time the
            last count took to send, so that counts never take more than 1/40 of the
            CPU (at 10,000 clients on a slow machine, one every 2 s or so), and by
            100 µs per connected client (1 s at 10,000).
    """

    def __init__(
        self,
        initial: StateSnapshot,
        history: tuple[Run, ...] = (),
        *,
        send_buffer_limit: int = 64 * 1024,
        stuck_timeout: float = 30.0,
        count_interval: float = 0.1,
        report_count: Callable[[int, Roster], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.clients: set[Client] = set()
        #: This instance's clients by name, role and kind of client.
        self.roster: Roster = Counter()
        self.others: Roster = Counter()
        self.snapshot = initial
        # Each state is encoded once, for every client that gets it.
        #: The state and the history messages as JSON text (a status or history reply).
        self.state_text = encode(StateMessage(initial))
        self.history = history
        self.history_text = encode(History(history))
        self._history_bytes = text_frame(self.history_text)
        #: The state and the history, framed, for every client that joins until they change.
        self._join_frames = text_frame(self.state_text) + self._history_bytes
        self.send_buffer_limit = send_buffer_limit
        self.stuck_timeout = stuck_timeout
        #: Clients skipped for a full buffer, with the loop time they fell behind.
        self.lagging: dict[Client, float] = {}
        self.count_interval = count_interval
        #: Told this instance's count and roster; the backend answers with the other
        #: instances' (set_others).
        self.report_count = report_count
        self.metrics = metrics
        #: The other instances' clients, as the backend last said: how many, and who.
        self.others_count = 0
        self._count_sent = -1  # the count everyone was last told
        self._presence_sent = ""  # the presence message everyone was last sent
        #: The clients that joined since the count was last announced.
        self._joined: set[Client] = set()
        self._count_sent_at = float("-inf")
        self._count_cost = 0.0  # seconds the last count took to send
        self._presence_frame = b""  # the last presence message, framed
        #: Whether the calculation's store can be reached; while it cannot, joiners
        #: are told so with their first messages.
        self.store_reachable = True
        self._store_frame = b""
        self._count_timer: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        """Start watching lagging clients (needs a running event loop)."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    def stop(self) -> None:
        """Stop the sweeper and the counts: the clients leaving as the server closes
        are not told each other's departure."""
        self._stopped = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._count_timer is not None:
            self._count_timer.cancel()
            self._count_timer = None

    def publish(self, change: Change, *, here: bool = True) -> int | None:
        """Send a new state to every client, and the history when it changed; an older
        or repeated state is dropped.

        Args:
            change: The new state.
            here: Whether this process committed it (see :meth:`log_sent`).

        Returns:
            How many clients got it; None if it was dropped.
        """
        snapshot = change.snapshot
        if snapshot.seq <= self.snapshot.seq:
            return None
        self.snapshot = snapshot
        self.state_text = encode(StateMessage(snapshot))
        state_bytes = text_frame(self.state_text)
        if change.history is not None:
            self.history = change.history
            self.history_text = encode(History(change.history))
            self._history_bytes = text_frame(self.history_text)
        self._join_frames = state_bytes + self._history_bytes
        began = time.perf_counter()
        # A new history goes with the state, in the same write: one system call per
        # client, not two.
        sent = self._send_to_all(state_bytes if change.history is None else self._join_frames)
        took = time.perf_counter() - began
        if self.metrics is not None:
            # Once per broadcast, never per client: the loop above is the hot path.
            self.metrics.broadcast_seconds.observe(took)
        self.log_sent(snapshot, sent, here=here)
        return sent

    def log_sent(self, snapshot: StateSnapshot, sent: int, *, here: bool = True) -> None:
        """The state's line: at INFO from the process that committed the change (``here``),
        at DEBUG from the others, so that instances and workers sharing a calculation
        log each change once between them. ``sent``: this process's clients."""
        logger.log(
            logging.INFO if here else logging.DEBUG,
            "state %s (calculation %s, seq %d) sent to %s here%s",
            snapshot.state,
            snapshot.calculation_id,
            snapshot.seq,
            plural(sent, "client"),
            f", {len(self.lagging)} lagging" if self.lagging else "",
            extra={
                "state": snapshot.state.value,
                "seq": snapshot.seq,
                "calculation_id": snapshot.calculation_id,
                "clients": sent,
            },
        )

    def set_store(self, reachable: bool) -> None:
        """The store was lost, or is back: everyone hears it at once."""
        if reachable == self.store_reachable:
            return
        self.store_reachable = reachable
        frame = text_frame(encode(Store(reachable)))
        self._store_frame = b"" if reachable else frame
        self._send_to_all(frame)
        logger.info(
            "told the clients that the store %s",
            "answers again" if reachable else "cannot be reached",
        )

    def join(self, client: Client, hello: str) -> None:
        """Add a client: it gets ``hello``, the current state and the history at once
        (and that the store is out of reach, while it is); it and everyone else the new
        count at once too, or within the count interval in a burst."""
        if client.writable:
            # One write for the three (and the handshake's response, see transport/connection.py).
            client.write(text_frame(hello) + self._join_frames + self._store_frame)
        self.clients.add(client)
        self._joined.add(client)
        self.roster[_key(client)] += 1
        self._local_count_changed()

    def leave(self, client: Client) -> None:
        """Remove a client; everyone left gets the new count soon."""
        self.lagging.pop(client, None)
        self._joined.discard(client)
        if client in self.clients:
            self.clients.remove(client)
            key = _key(client)
            self.roster[key] -= 1
            if self.roster[key] <= 0:
                del self.roster[key]
            self._local_count_changed()

    def _local_count_changed(self) -> None:
        """Announce it (this instance's part is always live, even while the store is
        out of reach), and tell the backend."""
        if self.report_count is not None:
            self.report_count(len(self.clients), self.roster)
        self._count_changed()

    def set_others(self, count: int, roster: Roster) -> None:
        """The other instances' clients changed (how many, and who): announce it."""
        self.others_count, self.others = count, roster
        self._count_changed()

    def presence(self) -> Presence:
        """Who is connected, over every instance: this instance's clients as they are
        now, the others' as last heard."""
        return presence_of([self.others, self.roster])

    @property
    def count(self) -> int:
        """The number the clients are told: this instance's clients now, and the other
        instances' as last heard."""
        return len(self.clients) + self.others_count

    def _count_changed(self) -> None:
        """Announce the count now, or once count_interval has passed since the last time."""
        if self._count_timer is not None or self._stopped:
            return  # already due: it will carry the latest count
        loop = asyncio.get_running_loop()
        interval = max(
            self.count_interval, len(self.clients) * 0.0001, COUNT_COST_FACTOR * self._count_cost
        )
        wait = self._count_sent_at + interval - loop.time()
        # Never from inside the change: a client joining is sent its hello first, with
        # the handshake's response, and the count after it.
        self._count_timer = loop.call_later(max(0.0, wait), self._announce_count)

    def _announce_count(self) -> None:
        """Tell everyone the count and who is connected, where they changed; those who
        joined since the last time, both."""
        self._count_timer = None
        began = time.perf_counter()
        joined, self._joined = self._joined, set()
        count = self.count
        count_frame = text_frame(self.count_text())
        presence_text = encode(self.presence())
        presence_frame = text_frame(presence_text)
        # Presence first, then the count: a client waiting for the count has heard who.
        news = b""
        if presence_text != self._presence_sent:
            news += presence_frame
        if count != self._count_sent:
            news += count_frame
        self._count_sent, self._presence_sent = count, presence_text
        self._presence_frame = presence_frame
        if news:
            self._count_sent_at = asyncio.get_running_loop().time()
            self._send_to_all(news, skip=joined)
        # Back where it was (one left, one came, within the interval), or not: those
        # who joined since have heard neither.
        both = presence_frame + count_frame
        for client in joined:
            if client.writable and client not in self.lagging:
                client.write(both)
        if news:
            self._count_cost = time.perf_counter() - began

    def count_text(self) -> str:
        return encode(Clients(count=self.count))

    def _send_to_all(self, frames: bytes, skip: set[Client] | None = None) -> int:
        """Write whole frames to every client with room in its buffer, in one pass; the
        others join :attr:`lagging`. Returns how many got them.

        This loop is the server's hot path: one iteration per client per message. A
        client closing, or whose peer vanished, is not ``writable`` (a data frame after
        a close frame breaks the protocol; a closing transport would only make asyncio
        log a warning per frame).
        """
        limit = self.send_buffer_limit
        lagging = self.lagging
        sent = 0
        for client in self.clients:
            if not client.writable or client in lagging or (skip and client in skip):
                continue
            transport = client.transport
            if transport.get_write_buffer_size() > limit:
                lagging[client] = asyncio.get_running_loop().time()
                logger.info("client %s is lagging: skipping it", client.short_id)
            else:
                transport.write(frames)
                sent += 1
        return sent

    def sweep(self) -> None:
        """Catch up the clients that drained; close those stuck past the timeout."""
        now = asyncio.get_running_loop().time()
        for client, since in list(self.lagging.items()):
            if not client.writable:
                del self.lagging[client]
            elif client.transport.get_write_buffer_size() <= self.send_buffer_limit:
                del self.lagging[client]
                # Only the latest state, history and count, in one write: what it
                # missed is out of date anyway.
                client.write(
                    self._join_frames
                    + self._store_frame
                    + self._presence_frame
                    + text_frame(self.count_text())
                )
                logger.info("client %s caught up", client.short_id)
            elif now - since > self.stuck_timeout:
                del self.lagging[client]
                logger.warning(
                    "client %s stuck for %.0f s with %d bytes unsent: disconnecting it",
                    client.short_id,
                    now - since,
                    client.transport.get_write_buffer_size(),
                )
                # It reads nothing, so it would never answer a close frame.
                client.abort()
                if self.metrics is not None:
                    self.metrics.dropped.labels("stuck").inc()

    async def _sweep_forever(self, interval: float = 0.1) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self.lagging:
                continue
            try:
                self.sweep()
            except Exception:  # the sweeper must outlive any bug
                logger.exception("sweeping lagging clients failed")


def _key(client: Client) -> Key:
    user = client.user
    return ANONYMOUS if user is None else key_of(user)
