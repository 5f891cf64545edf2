"""The calculation as both endpoints offer it: actions and their outcomes, views, readiness.

The WebSocket endpoint and the HTTP API both act on the calculation, read its state
and history, and need to know whether there is room for one more client. They get this
object, and neither imports the other nor the server. What an action's outcome means
is decided here, once for both: :meth:`CalculationService.perform` returns an
:class:`~progress_protocol.messages.Ack` or an :class:`~progress_protocol.messages.Error`
(refused, unavailable, internal error), counts it and logs it with who asked; each
endpoint only encodes it. The service starts and stops itself: it subscribes to the
backend, reads the first state and builds the :class:`~progress_server.hub.Hub`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from progress_protocol.messages import Ack, Command, Error, ErrorCode, Presence
from progress_protocol.states import Attribution, Run, StateSnapshot

from .backends.base import Backend, BackendUnavailable, Unsubscribe
from .calculation import ActionRefused, Change
from .config import ServerConfig
from .hub import Hub
from .metrics import Metrics
from .users import OPERATOR, User, forbidden_sentence, may

__all__ = ["CalculationService"]

logger = logging.getLogger(__name__)

#: Changes published before this process could know whether it committed them, kept
#: to be logged at INFO if it did.
HEARD_FIRST = 16


class CalculationService:
    """The actions and the views of one server instance.

    Lifecycle: :meth:`start` before the instance listens, :meth:`stop` as soon as it
    begins closing, :meth:`aclose` once nothing acts on the calculation any more.

    Args:
        config: The instance's settings.
        backend: Where the calculation lives; the service starts and closes it, and
            times it into ``metrics``.
        metrics: What it counts.
    """

    def __init__(self, config: ServerConfig, backend: Backend, metrics: Metrics) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics
        #: The connected clients and the fan-out; None until :meth:`start`.
        self.hub: Hub | None = None
        backend.on_commit = self._committed
        #: The seqs of the changes this process committed and has not published yet.
        self._committed_here: set[int] = set()
        #: The changes published but not known to be committed here: to how many
        #: clients each went, in case its commit is heard of later.
        self._heard_first: dict[int, int] = {}
        backend.on_latency = metrics.backend_latency.observe
        self._stopping = False
        self._unsubscribe: Unsubscribe | None = None
        self._unsubscribe_count: Unsubscribe | None = None
        self._gauges: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the backend, read the first state and history, and start the hub.

        Raises:
            BackendUnavailable: If the backend cannot start.
        """
        # Subscribed first, then the first snapshot is read: a change in between is
        # kept and replayed, and the hub drops what it has already seen.
        early: list[Change] = []
        self._unsubscribe = self.backend.subscribe(
            lambda change: self._publish(change) if self.hub else early.append(change)
        )
        await self.backend.start()
        config = self.config
        hub = self.hub = Hub(
            await self.backend.snapshot(),
            await self.backend.history(),
            send_buffer_limit=config.send_buffer_limit,
            stuck_timeout=config.stuck_timeout,
            report_count=self.backend.report_clients,
            metrics=self.metrics if config.metrics else None,
        )
        self._unsubscribe_count = self.backend.subscribe_clients(hub.set_others)
        # The clients hear when the store is lost and back: their run stands still.
        self.backend.on_problem = lambda problem: hub.set_store(problem is None)
        if self.backend.problem is not None:
            hub.set_store(False)
        for change in early:
            self._publish(change)
        hub.start()
        if self.metrics.multiprocess:
            self._gauges = asyncio.get_running_loop().create_task(self._refresh_gauges_forever())

    def _committed(self, snapshots: tuple[StateSnapshot, ...]) -> None:
        """Changes this process committed: counted here, once in the cluster, and logged
        at INFO (the other processes log them at DEBUG). Usually before they are
        published; a transition's copy from the shared store's channel may come first."""
        self.metrics.count_commits(snapshots)
        for snapshot in snapshots:
            sent = self._heard_first.pop(snapshot.seq, None)
            if sent is not None and self.hub is not None:
                self.hub.log_sent(snapshot, sent)
            else:
                self._committed_here.add(snapshot.seq)

    def _publish(self, change: Change) -> None:
        assert self.hub is not None
        seq = change.snapshot.seq
        here = seq in self._committed_here
        if self._committed_here:
            self._committed_here = {each for each in self._committed_here if each > seq}
        sent = self.hub.publish(change, here=here)
        if not here and sent is not None:
            self._heard_first[seq] = sent
            while len(self._heard_first) > HEARD_FIRST:
                del self._heard_first[next(iter(self._heard_first))]

    def stop(self) -> None:
        """Begin closing: readiness turns to "shutting down", no new client may join,
        and the hub stops its sweeps and counts. Actions still go through."""
        self._stopping = True
        if self._gauges is not None:
            self._gauges.cancel()
            self._gauges = None
        if self.hub is not None:
            self.hub.stop()

    async def aclose(self) -> None:
        """Stop, unsubscribe and close the backend: no change follows."""
        self.stop()
        for unsubscribe in (self._unsubscribe, self._unsubscribe_count):
            if unsubscribe is not None:
                unsubscribe()
        self._unsubscribe = self._unsubscribe_count = None
        await self.backend.aclose()

    @property
    def serving(self) -> bool:
        """Started and not stopping: a client may join."""
        return self.hub is not None and not self._stopping

    @property
    def not_ready(self) -> str | None:
        """Why clients should not be sent here now; None when they should."""
        if self.hub is None:
            return "starting"
        if self._stopping:
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

    async def _refresh_gauges_forever(self, interval: float = 1.0) -> None:
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
    def presence(self) -> Presence:
        """Who is connected, over every instance."""
        assert self.hub is not None
        return self.hub.presence()

    @property
    def full(self) -> bool:
        """Whether the next client would be one too many."""
        return self.hub is not None and len(self.hub.clients) >= self.config.max_clients

    async def perform(
        self,
        command: Command,
        request_id: str | None = None,
        by: Attribution | None = None,
        *,
        user: User | None = None,
        peer: str | None = None,
    ) -> Ack | Error:
        """Carry out a command, for the WebSocket and the HTTP API alike, and say how
        it went: an ack, or an error that is counted (``progress_errors_total``) and
        logged once, with who asked. Either is counted by role and outcome
        (``progress_actions_total``), never by name.

        A role that may not do it is ``forbidden`` (and the calculation is not even
        read), a state that does not allow it is ``already_running`` or
        ``not_running``, a store out of reach ``unavailable``, and anything else the
        backend raises ``internal_error`` (logged with its traceback).

        Args:
            command: What to do.
            request_id: Echoed in the answer.
            by: Who asked, for the state everyone gets, the history and the log.
            user: Who the server takes the caller for: its role decides; None is an
                operator (tests, and callers inside the server).
            peer: The address of a caller that has no client id (HTTP), for the log.
        """
        who = _who(by, peer)
        role = OPERATOR if user is None else user.role
        fields: dict[str, Any] = {
            "client_id": None if by is None else by.client_id,
            "client_name": None if by is None else by.name,
            "role": role,
            "peer": peer,
        }
        if user is not None and user.claimed is not None and user.claimed != user.name:
            fields["claimed_name"] = user.claimed
        if user is not None and not may(role, command):
            logger.info(
                "%s: %s refused: a %s may not",
                who,
                command,
                role,
                extra={**fields, "code": ErrorCode.FORBIDDEN},
            )
            return self._refused(
                command,
                role,
                Error(ErrorCode.FORBIDDEN, forbidden_sentence(user, command), request_id),
            )
        try:
            if command == "start":
                snapshot = await self.backend.start_calculation(by)
            else:
                snapshot = await self.backend.cancel_calculation(by)
            assert snapshot.calculation_id is not None
            ack = Ack(action=command, calculation_id=snapshot.calculation_id, request_id=request_id)
        except ActionRefused as exc:
            code, message = exc.code, exc.message
            logger.info("%s: %s refused: %s", who, command, code, extra={**fields, "code": code})
        except BackendUnavailable as exc:
            code, message = ErrorCode.UNAVAILABLE, str(exc)
            logger.info(
                "%s: %s refused: the store is unreachable",
                who,
                command,
                extra={**fields, "code": code},
            )
        except Exception:
            # A bug must not cost the client its connection, nor anyone else anything.
            code = ErrorCode.INTERNAL_ERROR
            message = f"The server failed to {command} the calculation; see its log."
            logger.exception(
                "%s: unexpected error while performing %s",
                who,
                command,
                extra={**fields, "code": code},
            )
        else:
            logger.info("%s: %s accepted", who, command, extra=fields)
            self.metrics.actions.labels(command, role, "accepted").inc()
            return ack
        return self._refused(command, role, Error(code, message, request_id))

    def _refused(self, command: Command, role: str, error: Error) -> Error:
        self.metrics.errors.labels(error.code).inc()
        self.metrics.actions.labels(command, role, error.code).inc()
        return error


def _who(by: Attribution | None, peer: str | None) -> str:
    """Who asked, for the log: ``client 84cab819dd9c as 'alice'`` over WebSocket,
    ``HTTP 127.0.0.1:50112 as 'curl-bob'`` over HTTP."""
    name = None if by is None else by.name
    if by is not None and by.client_id is not None:
        if name is None or name == by.client_id:
            return f"client {by.client_id}"
        return f"client {by.client_id} as {name!r}"
    if peer is not None:
        return f"HTTP {peer}" if name is None else f"HTTP {peer} as {name!r}"
    return "an unnamed caller" if name is None else repr(name)
