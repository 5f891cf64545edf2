"""What the WebSocket sessions and the HTTP routes both offer, in one small object.

Both act on the calculation, read its state and history, and need to know whether
there is room for one more client. They get this object, and neither imports the
other nor the server.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from progress_protocol.messages import Ack
from progress_protocol.states import Attribution, Run, StateSnapshot

from .backends.base import Backend
from .config import ServerConfig
from .hub import Hub
from .metrics import Metrics

__all__ = ["CalculationService"]


class CalculationService:
    """The actions and the views of one server instance.

    Args:
        config: The instance's settings.
        backend: Where the calculation lives.
        metrics: What it counts.
    """

    def __init__(self, config: ServerConfig, backend: Backend, metrics: Metrics) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics
        #: Set once the instance listens (its first snapshot is read then).
        self.hub: Hub | None = None
        #: Set when the instance starts closing: no new clients should be sent here.
        self.stopping = False

    @property
    def not_ready(self) -> str | None:
        """Why clients should not be sent here now; None when they should."""
        if self.hub is None:
            return "starting"
        if self.stopping:
            return "shutting down"
        return self.backend.problem

    def refresh_gauges(self) -> None:
        """Read the gauges now: they are kept off the hot path until asked."""
        metrics, hub = self.metrics, self.hub
        if hub is not None:
            metrics.clients.set(len(hub.clients))
            metrics.cluster_clients.set(hub.count)
            metrics.lagging.set(len(hub.lagging))
        metrics.backend_up.set(0 if self.backend.problem else 1)

    def scrape(self) -> bytes:
        """The metrics, with this process's gauges read now."""
        self.refresh_gauges()
        return self.metrics.exposition()

    async def refresh_gauges_forever(self, interval: float = 1.0) -> None:
        """Under --workers, a scrape reaches one worker: the others' gauges must be
        current without one, so each refreshes its own every ``interval``."""
        while True:
            self.refresh_gauges()
            await asyncio.sleep(interval)

    @property
    def snapshot(self) -> StateSnapshot:
        """The state every client was last sent."""
        assert self.hub is not None
        return self.hub.snapshot

    @property
    def history(self) -> tuple[Run, ...]:
        assert self.hub is not None
        return self.hub.history

    @property
    def full(self) -> bool:
        """Whether the next client would be one too many."""
        return self.hub is not None and len(self.hub.clients) >= self.config.max_clients

    async def perform(
        self,
        action: Literal["start", "cancel"],
        request_id: str | None,
        by: Attribution | None = None,
    ) -> Ack:
        """Carry out an action, for the WebSocket and the HTTP API alike.

        Args:
            action: What to do.
            request_id: Echoed in the ack.
            by: Who asked, for the state everyone gets and the history.

        Raises:
            ActionRefused: If the state does not allow it; nothing was changed.
        """
        if action == "start":
            snapshot = await self.backend.start_calculation(by)
        else:
            snapshot = await self.backend.cancel_calculation(by)
        assert snapshot.calculation_id is not None
        return Ack(action=action, calculation_id=snapshot.calculation_id, request_id=request_id)
