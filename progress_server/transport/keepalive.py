"""Keepalive pings for every client from one task, instead of one task per client.

websockets' asyncio connection pings from a task of its own: 10,000 clients would mean
10,000 tasks, each with its coroutine, its sleep and its timer (about 1.5 KiB a client),
and a ping framed 10,000 times. Here one task pings every client once per
``interval``, a twentieth of them at a time with one frame, the same bytes, for all of
that slice (see :mod:`~progress_server.transport.frames`), and drops those that have not
answered within ``timeout`` as websockets would: close 1011 "keepalive ping timeout".

Only a pong that carries the ping's payload is an answer, as with websockets: it
proves that the client read the ping, not only that it can send (a client whose
reading side is stuck but which sends heartbeats would otherwise hold its place for
ever).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Collection

from websockets.frames import CloseCode

from .connection import KEEPALIVE_SLICES, GuardedConnection
from .frames import ping_frame

__all__ = ["Keepalive"]

logger = logging.getLogger(__name__)


class Keepalive:
    """Pings the open connections of ``connections()`` and drops the silent ones.

    Args:
        connections: Every connection, handshakes under way included (only open ones
            are pinged).
        interval: Seconds between two pings to a client.
        timeout: Seconds a client may take to answer before it is dropped.
    """

    def __init__(
        self,
        connections: Callable[[], Collection[GuardedConnection]],
        *,
        interval: float,
        timeout: float,
    ) -> None:
        self.connections = connections
        self.interval = interval
        self.timeout = timeout
        #: Connections pinged and not answered yet, with the loop time of the ping.
        self.waiting: dict[GuardedConnection, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.waiting.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # One slice of the clients is pinged every interval / KEEPALIVE_SLICES, so
        # that their pongs do not all come back at once (10,000 pongs are a second of
        # CPU) and each client is pinged once per interval. Timeouts are checked at
        # least as often, so a silent client leaves soon after its deadline.
        spacing = self.interval / KEEPALIVE_SLICES
        tick = min(spacing, self.timeout / KEEPALIVE_SLICES)
        turn = 0
        next_ping = loop.time() + spacing
        while True:
            await asyncio.sleep(tick)
            try:
                now = loop.time()
                self.check(now)
                if now >= next_ping:
                    self.ping(now, turn)
                    turn = (turn + 1) % KEEPALIVE_SLICES
                    next_ping += spacing
                    if next_ping < now:  # the loop was held up: no burst to catch up
                        next_ping = now + spacing
            except Exception:  # the keepalive must outlive any bug
                logger.exception("the keepalive sweep failed")

    def ping(self, now: float, turn: int | None = None) -> int:
        """Ping the open clients of slice ``turn`` (None: all of them) not already
        waiting for their answer, all with the same frame; returns how many."""
        payload = os.urandom(4)
        frame = ping_frame(payload)
        waiting = self.waiting
        sent = 0
        for connection in self.connections():
            if turn is not None and connection.slice != turn:
                continue
            if not connection.writable or connection in waiting:
                continue
            connection.transport.write(frame)
            connection.expected_pong = payload
            waiting[connection] = now
            sent += 1
        return sent

    def check(self, now: float) -> None:
        """Forget the clients that answered or left; drop those past the timeout."""
        for connection, pinged in list(self.waiting.items()):
            if connection.last_pong >= pinged or not connection.writable:
                del self.waiting[connection]
            elif now - pinged > self.timeout:
                del self.waiting[connection]
                connection.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
