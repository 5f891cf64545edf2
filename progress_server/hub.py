"""The connected clients of one server instance and the fan-out of every change to them.

Every write here is synchronous (websockets' :func:`~websockets.asyncio.server.broadcast`
queues the frame and returns): the calculation never awaits a client, so a slow
client cannot delay the others, and no change can slip in between a client's
joining and the snapshot it is sent.
"""

from __future__ import annotations

import logging

from websockets.asyncio.server import ServerConnection, broadcast

from .calculation import StateSnapshot
from .protocol import Clients, StateMessage, encode

__all__ = ["Hub"]

logger = logging.getLogger(__name__)


class Hub:
    """Keeps the set of connected clients and the last state they were sent.

    Args:
        initial: The calculation's state when the server starts.
    """

    def __init__(self, initial: StateSnapshot) -> None:
        self.clients: set[ServerConnection] = set()
        self.snapshot = initial
        # Each state is encoded once, for every client that gets it.
        self.state_frame = encode(StateMessage(initial))

    def publish(self, snapshot: StateSnapshot) -> None:
        """Send a new state to every client; an older or repeated one is dropped."""
        if snapshot.seq <= self.snapshot.seq:
            return
        self.snapshot = snapshot
        self.state_frame = encode(StateMessage(snapshot))
        logger.info(
            "state %s (calculation %s, seq %d) sent to %d clients",
            snapshot.state,
            snapshot.calculation_id,
            snapshot.seq,
            len(self.clients),
        )
        broadcast(self.clients, self.state_frame)

    def join(self, connection: ServerConnection) -> None:
        """Add a client: it gets the current state at once, everyone the new count."""
        broadcast([connection], self.state_frame)
        self.clients.add(connection)
        self._announce_count()

    def leave(self, connection: ServerConnection) -> None:
        """Remove a client; everyone left gets the new count."""
        if connection in self.clients:
            self.clients.remove(connection)
            self._announce_count()

    def _announce_count(self) -> None:
        broadcast(self.clients, encode(Clients(count=len(self.clients))))
