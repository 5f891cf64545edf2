"""The asyncio server: the WebSocket endpoint and the HTTP routes on one port.

A thin layer: each connection (:mod:`~progress_server.connection`) reports to the
server as its session; actions go to the :class:`~progress_server.backends.Backend`,
changes come back through the :class:`~progress_server.hub.Hub`, and messages are
read and written with :mod:`progress_protocol.messages`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import ssl
from collections.abc import Awaitable, Coroutine
from types import TracebackType
from typing import Any

from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State as ConnectionState

from progress_protocol.messages import (
    Error,
    ErrorCode,
    Hello,
    ProtocolError,
    decode_request,
    encode,
)
from progress_protocol.states import Attribution

from . import __version__
from .auth import presented_name
from .backends.base import Backend, BackendUnavailable, Unsubscribe
from .backends.memory import MemoryBackend
from .backends.redis import RedisBackend
from .calculation import ActionRefused, Change
from .config import ServerConfig
from .hub import Hub
from .limits import Verdict
from .logs import Burst
from .metrics import Metrics
from .routes import HttpRoutes
from .service import CalculationService
from .transport.connection import CLOSE_TIMEOUT, GuardedConnection
from .transport.descriptors import DescriptorWatch, clients_that_fit, open_files_limit
from .transport.keepalive import Keepalive

__all__ = [
    "SERVER_NAME",
    "ProgressServer",
    "SetupError",
    "format_url",
]

logger = logging.getLogger(__name__)

SERVER_NAME = f"progress-server/{__version__}"

#: Clients that come (and go) logged one by one each second; the rest are summed up.
LOG_EACH = 20

#: How long closing waits for the clients to go and for answers in flight, each.
SHUTDOWN_GRACE = CLOSE_TIMEOUT + 0.5

#: Where a client's id goes in the hello encoded once (ids are 12 hex digits).
HELLO_ID = "@client-id@"


def format_url(scheme: str, host: str, port: int, path: str = "") -> str:
    """``scheme://host:port/path``, with an IPv6 host in brackets."""
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{path}"


class ProgressServer:
    """One server instance; use it as ``async with ProgressServer(...) as server:``.

    Args:
        config: The settings; keyword arguments override single fields of it,
            e.g. ``ProgressServer(port=0, step_seconds=0.05)``.
        backend: Where the calculation lives; by default a new in-memory one.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        backend: Backend | None = None,
        **overrides: Any,
    ) -> None:
        self.config = dataclasses.replace(config or ServerConfig(), **overrides)
        self.backend = (
            backend if backend is not None else MemoryBackend(step_seconds=self.config.step_seconds)
        )
        self.port = self.config.port  # the real one once listening, for --port 0
        self.metrics = Metrics()
        self.service = CalculationService(self.config, self.backend, self.metrics)
        if isinstance(self.backend, RedisBackend):
            self.backend.latency_observer = self.metrics.backend_latency.observe
        self.backend.on_commit = self.metrics.count_commits
        #: Every open connection, handshakes under way included.
        self.connections: set[GuardedConnection] = set()
        self.descriptors = DescriptorWatch(lambda: len(self.connections))
        self.routes = HttpRoutes(self.service)
        self.keepalive = Keepalive(
            lambda: self.connections,
            interval=self.config.ping_interval,
            timeout=self.config.ping_timeout,
        )
        self._listener: asyncio.Server | None = None
        # Hello differs from one client to the next by the id alone: encoded once.
        self._hello = encode(Hello(server=SERVER_NAME, client_id=HELLO_ID))
        #: Set when the last connection is gone once closing began.
        self._all_closed: asyncio.Event | None = None
        #: HTTP answers and actions in flight: closing waits for them.
        self._tasks: set[asyncio.Task[None]] = set()
        # A line for each client that comes or goes, up to LOG_EACH a second; past it,
        # a line a second with how many more did.
        self._joins = Burst(LOG_EACH, functools.partial(self._log_burst, "connected"))
        self._leaves = Burst(LOG_EACH, functools.partial(self._log_burst, "disconnected"))
        self._unsubscribe: Unsubscribe | None = None
        self._unsubscribe_count: Unsubscribe | None = None
        self._gauges: asyncio.Task[None] | None = None

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def path(self) -> str:
        return self.config.path

    @property
    def hub(self) -> Hub | None:
        """The connected clients; None until the server listens."""
        return self.service.hub

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        return format_url("wss" if self.config.tls else "ws", self.host, self.port, self.path)

    @property
    def http_url(self) -> str:
        """The base URL of the HTTP endpoints."""
        return format_url("https" if self.config.tls else "http", self.host, self.port)

    async def start(self) -> None:
        """Listen; :attr:`port` is the real port afterwards.

        Raises:
            OSError: If the address cannot be bound, e.g. the port is in use.
        """
        config = self.config
        ssl_context = _server_ssl_context(config) if config.tls else None
        # Subscribed first, then the first snapshot is read: a change in between is
        # kept and replayed, and the hub drops what it has already seen.
        early: list[Change] = []
        self._unsubscribe = self.backend.subscribe(
            lambda change: self.hub.publish(change) if self.hub else early.append(change)
        )
        await self.backend.start()
        hub = self.service.hub = Hub(
            await self.backend.snapshot(),
            await self.backend.history(),
            send_buffer_limit=config.send_buffer_limit,
            stuck_timeout=config.stuck_timeout,
            report_count=self.backend.report_clients,
            metrics=self.metrics if config.metrics else None,
        )
        self._unsubscribe_count = self.backend.subscribe_clients(hub.set_total)
        for change in early:
            hub.publish(change)
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._new_connection,
            config.host,
            config.port,
            ssl=ssl_context,
            ssl_handshake_timeout=config.handshake_timeout if ssl_context else None,
            backlog=4096,  # bursts of new connections (a restart: every client at once)
            reuse_port=config.reuse_port or None,
        )
        hub.start()
        self.keepalive.start()
        self.descriptors.start()
        if self.metrics.multiprocess:
            self._gauges = asyncio.get_running_loop().create_task(
                self.service.refresh_gauges_forever()
            )
        self.port = self._listener.sockets[0].getsockname()[1]
        logger.info("listening on %s", self.url)
        logger.info(
            "HTTP endpoints: GET %s/healthz, /readyz, /metrics, /state, /history; "
            "POST /start, /cancel",
            self.http_url,
        )
        if not config.loopback and config.token is None:
            # Said once the address is bound: a failure to bind says something else.
            logger.warning(
                "listening on %s without --token: anyone who can reach this address can "
                "start and cancel the calculation",
                config.host,
            )
        room = clients_that_fit(open_files_limit())
        if room is not None and room < config.max_clients:
            logger.warning(
                "the limit on open files is %d: about %d clients can connect, not the %d "
                "of --max-clients; raise it (ulimit -n, or LimitNOFILE= for systemd)",
                open_files_limit(),
                room,
                config.max_clients,
            )

    async def close(self) -> None:
        """Stop accepting, close every client with 1001 (going away), stop the backend."""
        self.service.stopping = True
        if self._gauges is not None:
            self._gauges.cancel()
            self._gauges = None
        if self.hub is not None:
            self.hub.stop()
        self.keepalive.stop()
        self.descriptors.stop()
        if self._listener is not None:
            self._listener.close()  # no new connections; handshakes under way get 503
            self._listener = None
            if self._tasks:
                # What is in flight is answered first, before the clients are closed:
                # an HTTP request gets its answer, and a start or cancel already on
                # its way to the store finishes (within the store's own budget) and
                # its client hears how.
                grace = max(SHUTDOWN_GRACE, self.backend.action_seconds + 0.5)
                await asyncio.wait(set(self._tasks), timeout=grace)
            await self._close_connections()
        if self._tasks:  # an action must not outlive the backend it acts on
            _done, late = await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for unsubscribe in (self._unsubscribe, self._unsubscribe_count):
            if unsubscribe is not None:
                unsubscribe()
        self._unsubscribe = self._unsubscribe_count = None
        await self.backend.aclose()
        self._joins.flush()
        self._leaves.flush()
        logger.info("server stopped")

    async def __aenter__(self) -> ProgressServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # What the connections ask of the server (connection.Session).

    def _new_connection(self) -> GuardedConnection:
        return GuardedConnection(
            self,
            config=self.config,
            registry=self.connections,
            metrics=self.metrics,
            server_header=SERVER_NAME,
        )

    @property
    def serving(self) -> bool:
        return self._listener is not None and not self.service.stopping

    def process_request(
        self, connection: GuardedConnection, request: Request
    ) -> Response | Awaitable[Response] | None:
        return self.routes.process_request(connection, request)

    def opened(self, connection: GuardedConnection) -> None:
        """A client completed its handshake: it joins, or is told the server is full."""
        hub = self.hub
        assert hub is not None and connection.request is not None
        metrics = self.metrics
        if self.service.full:  # handshakes that raced past the check in process_request
            metrics.connections.labels(ErrorCode.SERVER_FULL).inc()
            connection.close(CloseCode.TRY_AGAIN_LATER, "server full")
            return
        client_id = connection.short_id
        name = presented_name(connection.request.headers, connection.request.path)
        connection.by = Attribution(client_id, name or client_id)
        hub.join(connection, self._hello.replace(HELLO_ID, client_id, 1))
        metrics.accepted.inc()
        if logger.isEnabledFor(logging.INFO) and self._joins.allow():
            peer = connection.peer
            logger.info(
                "client %s connected from %s%s (now %d connected)",
                client_id,
                peer,
                f" as {name!r}" if name else "",
                len(hub.clients),
                extra={"client_id": client_id, "peer": peer, "client_name": name},
            )

    def received(
        self, connection: GuardedConnection, data: str | bytes, verdict: Verdict
    ) -> Awaitable[None] | None:
        """A client's message: answered at once, or an action to await."""
        if verdict is Verdict.ALLOW:
            return self._reply(connection, data)
        self.metrics.errors.labels(ErrorCode.RATE_LIMITED).inc()
        connection.send(RATE_LIMITED)
        return None

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def closed(self, connection: GuardedConnection) -> None:
        """A connection is gone: a client that joined leaves, and the log says why."""
        hub = self.hub
        if hub is not None and connection in hub.clients:
            hub.leave(connection)
            reason, dropped = _close_reason(connection, self.config.ping_timeout)
            if dropped is not None:
                self.metrics.dropped.labels(dropped).inc()
            if logger.isEnabledFor(logging.INFO) and (
                dropped is not None or connection.dropped is not None or self._leaves.allow()
            ):
                client_id = connection.short_id
                logger.info(
                    "client %s disconnected, %s (now %d connected)",
                    client_id,
                    reason,
                    len(hub.clients),
                    extra={
                        "client_id": client_id,
                        "peer": connection.peer,
                        "code": connection.close_code,
                        "reason": reason,
                    },
                )
        if self._all_closed is not None and not self.connections:
            self._all_closed.set()

    def _log_burst(self, what: str, count: int) -> None:
        logger.info(
            "%s more %s (now %d connected), not logged one by one: over %d a second",
            count,
            "client " + what if count == 1 else "clients " + what,
            len(self.hub.clients) if self.hub is not None else 0,
            LOG_EACH,
            extra={"clients": count},
        )

    async def _close_connections(self) -> None:
        """Close every client with 1001 and wait, at most SHUTDOWN_GRACE, for them all
        to be gone; handshakes under way meanwhile get their answer (503 for a
        WebSocket, the HTTP API's own). Whatever is left then is cut."""
        self._all_closed = asyncio.Event()
        for connection in list(self.connections):
            if connection.protocol.state is ConnectionState.OPEN:
                connection.close(CloseCode.GOING_AWAY)
        if self.connections:
            try:
                async with asyncio.timeout(SHUTDOWN_GRACE):
                    await self._all_closed.wait()
            except TimeoutError:
                for connection in list(self.connections):
                    connection.abort()
                await asyncio.sleep(0)  # their connection_lost runs
        self._all_closed = None

    def _reply(self, connection: GuardedConnection, data: str | bytes) -> Awaitable[None] | None:
        """Answer a status or history request, or an invalid message, at once; return
        an action (start, cancel) to await."""
        assert self.hub is not None
        metrics = self.metrics
        try:
            request = decode_request(data)
        except ProtocolError as exc:
            metrics.messages.labels("invalid").inc()
            metrics.errors.labels(exc.code).inc()
            logger.info(
                "client %s: error %s: %s",
                connection.short_id,
                exc.code,
                exc.message,
                extra={"client_id": connection.short_id, "code": exc.code},
            )
            self._send_reply(connection, encode(exc.to_error()))
            return None
        except Exception:
            metrics.errors.labels(ErrorCode.INTERNAL_ERROR).inc()
            logger.exception(
                "client %s: unexpected error while handling a message", connection.short_id
            )
            connection.send(INTERNAL_ERROR)
            return None
        metrics.messages.labels(request.action).inc()
        if request.action == "status":
            connection.send(self.hub.state_text)
            return None
        if request.action == "history":
            connection.send(self.hub.history_text)
            return None
        return self._perform(connection, request.action, request.request_id)

    async def _perform(
        self, connection: GuardedConnection, action: str, request_id: str | None
    ) -> None:
        by: Attribution = connection.by
        client_id = connection.short_id
        metrics = self.metrics
        reply: str
        try:
            reply = encode(await self.service.perform(action, request_id, by))  # type: ignore[arg-type]
            logger.info(
                "client %s: %s accepted",
                client_id,
                action,
                extra={"client_id": client_id, "client_name": by.name},
            )
        except ActionRefused as exc:
            metrics.errors.labels(exc.code).inc()
            logger.info(
                "client %s: %s refused: %s",
                client_id,
                action,
                exc.code,
                extra={"client_id": client_id, "code": exc.code},
            )
            reply = encode(Error(code=exc.code, message=exc.message, request_id=request_id))
        except BackendUnavailable as exc:
            metrics.errors.labels(ErrorCode.UNAVAILABLE).inc()
            logger.info(
                "client %s: %s refused: the store is unreachable",
                client_id,
                action,
                extra={"client_id": client_id, "code": ErrorCode.UNAVAILABLE},
            )
            reply = encode(
                Error(code=ErrorCode.UNAVAILABLE, message=str(exc), request_id=request_id)
            )
        except Exception:
            # A bug must not cost the client its connection, nor anyone else anything.
            metrics.errors.labels(ErrorCode.INTERNAL_ERROR).inc()
            logger.exception("client %s: unexpected error while handling a message", client_id)
            reply = INTERNAL_ERROR
        self._send_reply(connection, reply)

    @staticmethod
    def _send_reply(connection: GuardedConnection, reply: str) -> None:
        try:
            connection.send(reply)
        except Exception:
            # The reply could not be encoded: the client still gets an answer, and the
            # connection stays up.
            logger.exception("client %s: the reply could not be sent", connection.short_id)
            connection.send(INTERNAL_ERROR)


RATE_LIMITED = encode(
    Error(
        code=ErrorCode.RATE_LIMITED,
        message="Too many messages: this one was dropped. Slow down or you will be disconnected.",
    )
)
INTERNAL_ERROR = encode(
    Error(
        code=ErrorCode.INTERNAL_ERROR,
        message="The server failed to handle this message; see its log.",
    )
)


class SetupError(Exception):
    """The server cannot start as configured; the message says why, for a person."""


def _server_ssl_context(config: ServerConfig) -> ssl.SSLContext:
    """TLS for wss:// and https://.

    Raises:
        SetupError: If the certificate or the key cannot be read or do not match.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert config.certfile is not None
    try:
        context.load_cert_chain(config.certfile, config.keyfile)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise SetupError(f"cannot use the certificate {config.certfile}: {reason}") from None
    return context


def _close_reason(connection: GuardedConnection, ping_timeout: float) -> tuple[str, str | None]:
    """Why a client left, for a person; and why it was dropped, for the metrics."""
    if connection.dropped is not None:
        return connection.dropped, None  # counted when it was dropped
    sent = connection.protocol.close_sent
    received = connection.protocol.close_rcvd
    if sent is not None and received is None and sent.code == CloseCode.INTERNAL_ERROR:
        # The keepalive closes with 1011 when a ping goes unanswered (a failed join,
        # the other 1011, says so in ``dropped``).
        return f"dropped: no pong within {ping_timeout:g} s", "ping_timeout"
    if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
        return "dropped: a message over --max-message-bytes (1009)", "oversized"
    code = connection.close_code
    return ("no close frame" if code is None else f"code {code}"), None
