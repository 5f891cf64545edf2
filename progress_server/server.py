"""The asyncio server: the WebSocket endpoint and the HTTP routes on one port.

A thin layer: actions go to the :class:`~progress_server.backends.Backend`, changes
come back through the :class:`~progress_server.hub.Hub`, and messages are read and
written with :mod:`progress_protocol.messages`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import ssl
from types import TracebackType
from typing import Any, cast

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from progress_protocol.messages import (
    Error,
    ErrorCode,
    Hello,
    ProtocolError,
    decode_request,
    encode,
)

from . import __version__
from .auth import presented_name
from .backends import Backend, BackendUnavailable, Change, MemoryBackend, Unsubscribe
from .backends.redis import RedisBackend
from .calculation import ActionRefused, Attribution
from .config import DEFAULT_HOST, DEFAULT_PATH, DEFAULT_PORT, ServerConfig
from .connection import GuardedConnection
from .descriptors import DescriptorWatch, clients_that_fit, open_files_limit
from .hub import Hub
from .keepalive import Keepalive
from .limits import Verdict
from .metrics import Metrics
from .routes import HttpRoutes
from .service import CalculationService

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PATH",
    "DEFAULT_PORT",
    "SERVER_NAME",
    "ProgressServer",
    "SetupError",
    "format_url",
]

logger = logging.getLogger(__name__)

SERVER_NAME = f"progress-server/{__version__}"

#: How long closing waits for a client's close frame, at shutdown in particular.
CLOSE_TIMEOUT = 1.0


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
        self._server: Server | None = None
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
        self._server = await serve(
            self.handle,  # type: ignore[arg-type]  # it gets a GuardedConnection
            config.host,
            config.port,
            create_connection=cast(
                type[ServerConnection],
                functools.partial(
                    GuardedConnection,
                    config=config,
                    registry=self.connections,
                    metrics=self.metrics,
                ),
            ),
            process_request=self.routes.process_request,
            server_header=SERVER_NAME,
            open_timeout=config.handshake_timeout,
            close_timeout=CLOSE_TIMEOUT,
            # One task pings every client (Keepalive), not one task per client.
            ping_interval=None,
            max_size=config.max_message_bytes,
            ssl=ssl_context,
            # Messages are ~150 bytes: deflate saves little and costs ~300 KiB of zlib
            # state per connection (measured: 109 vs 43 MiB after a 200-client soak).
            compression=None,
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
        self.port = self._server.sockets[0].getsockname()[1]
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
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for unsubscribe in (self._unsubscribe, self._unsubscribe_count):
            if unsubscribe is not None:
                unsubscribe()
        self._unsubscribe = self._unsubscribe_count = None
        await self.backend.aclose()
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

    async def handle(self, connection: GuardedConnection) -> None:
        """Serve one WebSocket client for as long as it stays connected."""
        assert self.hub is not None
        client_id = connection.short_id
        peer = _format_peer(connection.remote_address)
        assert connection.request is not None
        name = presented_name(connection.request.headers, connection.request.path)
        # Nothing reads the handshake's headers after this: they need not live as long
        # as the connection (2 KiB a client). The request stays (websockets tells the
        # handshake is over by it, and its parser holds it), its headers emptied.
        connection.request.headers.clear()
        connection.response = None
        by = Attribution(client_id, name or client_id)
        joined = False
        metrics = self.metrics
        if self.service.full:  # handshakes that raced past the check in process_request
            metrics.connections.labels("server_full").inc()
            await connection.close(CloseCode.TRY_AGAIN_LATER, "server full")
            return
        loop = asyncio.get_running_loop()
        try:
            self.hub.join(connection, encode(Hello(server=SERVER_NAME, client_id=client_id)))
            joined = True
            metrics.connections.labels("accepted").inc()
            logger.info(
                "client %s connected from %s%s (now %d connected)",
                client_id,
                peer,
                f" as {name!r}" if name else "",
                len(self.hub.clients),
                extra={"client_id": client_id, "peer": peer, "client_name": name},
            )
            async for data in connection:
                verdict = connection.budget.take(loop.time())
                if verdict is Verdict.ALLOW:
                    await self._reply(connection, by, data)
                elif verdict is Verdict.REFUSE:
                    metrics.errors.labels(ErrorCode.RATE_LIMITED).inc()
                    await connection.send(RATE_LIMITED)
                else:
                    connection.dropped = "flooding with messages"
                    metrics.dropped.labels("flood").inc()
                    logger.warning(
                        "client %s: closed for flooding (messages)",
                        client_id,
                        extra={"client_id": client_id, "peer": peer, "reason": "flood"},
                    )
                    await connection.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
        except ConnectionClosed:
            pass
        finally:
            if joined:
                self.hub.leave(connection)
                reason, dropped = _close_reason(connection, self.config.ping_timeout)
                if dropped is not None:
                    metrics.dropped.labels(dropped).inc()
                logger.info(
                    "client %s disconnected, %s (now %d connected)",
                    client_id,
                    reason,
                    len(self.hub.clients),
                    extra={
                        "client_id": client_id,
                        "peer": peer,
                        "code": connection.close_code,
                        "reason": reason,
                    },
                )

    async def _reply(
        self, connection: GuardedConnection, by: Attribution, data: str | bytes
    ) -> None:
        assert self.hub is not None and by.client_id is not None
        client_id = by.client_id
        metrics = self.metrics
        reply: str
        try:
            request = decode_request(data)
            metrics.messages.labels(request.action).inc()
            if request.action == "status":
                reply = self.hub.state_frame
            elif request.action == "history":
                reply = self.hub.history_frame
            else:
                reply = encode(await self.service.perform(request.action, request.request_id, by))
                logger.info(
                    "client %s: %s accepted",
                    client_id,
                    request.action,
                    extra={"client_id": client_id, "client_name": by.name},
                )
        except ProtocolError as exc:
            metrics.messages.labels("invalid").inc()
            metrics.errors.labels(exc.code).inc()
            logger.info(
                "client %s: error %s: %s",
                client_id,
                exc.code,
                exc.message,
                extra={"client_id": client_id, "code": exc.code},
            )
            reply = encode(exc.to_error())
        except ActionRefused as exc:
            metrics.errors.labels(exc.code).inc()
            logger.info(
                "client %s: %s refused: %s",
                client_id,
                request.action,
                exc.code,
                extra={"client_id": client_id, "code": exc.code},
            )
            reply = encode(Error(code=exc.code, message=exc.message, request_id=request.request_id))
        except BackendUnavailable as exc:
            metrics.errors.labels(ErrorCode.UNAVAILABLE).inc()
            logger.info(
                "client %s: %s refused: the store is unreachable",
                client_id,
                request.action,
                extra={"client_id": client_id, "code": ErrorCode.UNAVAILABLE},
            )
            reply = encode(
                Error(code=ErrorCode.UNAVAILABLE, message=str(exc), request_id=request.request_id)
            )
        except Exception:
            # A bug must not cost the client its connection, nor anyone else anything.
            metrics.errors.labels(ErrorCode.INTERNAL_ERROR).inc()
            logger.exception("client %s: unexpected error while handling a message", client_id)
            reply = INTERNAL_ERROR
        try:
            await connection.send(reply)
        except ConnectionClosed:
            raise
        except Exception:
            # The reply could not be encoded or written: the client still gets an
            # answer, and the connection stays up.
            logger.exception("client %s: the reply could not be sent", client_id)
            await connection.send(INTERNAL_ERROR)


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


def _format_peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return format_url("tcp", str(address[0]), int(address[1])).removeprefix("tcp://")
    return str(address)


def _close_reason(connection: GuardedConnection, ping_timeout: float) -> tuple[str, str | None]:
    """Why a client left, for a person; and why it was dropped, for the metrics."""
    if connection.dropped is not None:
        return connection.dropped, None  # counted when it was dropped
    sent = connection.protocol.close_sent
    received = connection.protocol.close_rcvd
    if sent is not None and received is None and sent.code == CloseCode.INTERNAL_ERROR:
        # websockets closes with 1011 when a keepalive ping goes unanswered.
        return f"dropped: no pong within {ping_timeout:g} s", "ping_timeout"
    if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
        return "dropped: a message over --max-message-bytes (1009)", "oversized"
    code = connection.close_code
    return ("no close frame" if code is None else f"code {code}"), None
