"""The asyncio server: setup and lifecycle of one instance, on one port.

A thin layer: it builds the parts and starts and stops them in order. Each connection
(:mod:`~progress_server.transport.connection`) reports to the WebSocket endpoint
(:mod:`~progress_server.endpoints.websocket`), which asks the HTTP API
(:mod:`~progress_server.endpoints.http_api`) about every request first; both act
through the :class:`~progress_server.service.CalculationService`, which owns the
:class:`~progress_server.backends.base.Backend` and the
:class:`~progress_server.hub.Hub`. The keepalive and the file descriptor watch look
after every connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from types import TracebackType
from typing import Any

from progress_protocol import __version__

from .access import Access
from .backends.base import Backend
from .backends.memory import MemoryBackend
from .config import ServerConfig
from .endpoints.http_api import HttpApi
from .endpoints.websocket import WebSocketEndpoint
from .hub import Hub
from .metrics import Metrics
from .service import CalculationService
from .tokens import Tokens, TokensFileError
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

#: How long closing waits for the clients to go and for answers in flight, each.
SHUTDOWN_GRACE = CLOSE_TIMEOUT + 0.5


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
        #: Every open connection, handshakes under way included.
        self.connections: set[GuardedConnection] = set()
        #: Who holds which credential: the token, or the tokens file as it is now.
        self.access = Access(token=self.config.token, tokens_file=self.config.tokens_file)
        self.http_api = HttpApi(self.service, self.access)
        #: The session every connection reports to.
        self.websocket = WebSocketEndpoint(
            self.service, self.http_api, connections=self.connections, server_name=SERVER_NAME
        )
        self.access.on_change = self._tokens_changed
        self.descriptors = DescriptorWatch(lambda: len(self.connections))
        self.keepalive = Keepalive(
            lambda: self.connections,
            interval=self.config.ping_interval,
            timeout=self.config.ping_timeout,
        )
        self._listener: asyncio.Server | None = None

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def path(self) -> str:
        return self.config.path

    @property
    def hub(self) -> Hub | None:
        """The connected clients; None until the server starts."""
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
            SetupError: If the certificate or the tokens file cannot be used.
            BackendUnavailable: If the backend cannot start.
            OSError: If the address cannot be bound, e.g. the port is in use.
        """
        config = self.config
        ssl_context = _server_ssl_context(config) if config.tls else None
        try:
            self.access.start()
        except TokensFileError as exc:
            raise SetupError(f"cannot use the tokens file: {exc}") from None
        self.backend.tokens_fingerprint = self.access.fingerprint
        try:
            await self.service.start()
        except BaseException:
            self.access.stop()
            raise
        loop = asyncio.get_running_loop()
        try:
            self._listener = await loop.create_server(
                self._new_connection,
                config.host,
                config.port,
                ssl=ssl_context,
                ssl_handshake_timeout=config.handshake_timeout if ssl_context else None,
                backlog=4096,  # bursts of new connections (a restart: every client at once)
                reuse_port=config.reuse_port or None,
            )
        except BaseException:
            await self.service.aclose()  # nothing will ever close it otherwise
            self.access.stop()
            raise
        self.keepalive.start()
        self.descriptors.start()
        self.port = self._listener.sockets[0].getsockname()[1]
        logger.info("listening on %s", self.url)
        logger.info(
            "HTTP endpoints: GET %s/healthz, /readyz, /metrics, /state, /history, "
            "/presence; POST /start, /cancel",
            self.http_url,
        )
        if not config.loopback and not self.access.needs_token:
            # Said once the address is bound: a failure to bind says something else.
            logger.warning(
                "listening on %s without --token or --tokens-file: anyone who can reach "
                "this address can start and cancel the calculation",
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
        self.service.stop()
        self.keepalive.stop()
        self.descriptors.stop()
        self.access.stop()
        tasks = self.websocket.tasks
        if self._listener is not None:
            self._listener.close()  # no new connections; handshakes under way get 503
            self._listener = None
            if tasks:
                # What is in flight is answered first, before the clients are closed:
                # an HTTP request gets its answer, and a start or cancel already on
                # its way to the store finishes (within the store's own budget) and
                # its client hears how.
                grace = max(SHUTDOWN_GRACE, self.backend.action_seconds + 0.5)
                await asyncio.wait(set(tasks), timeout=grace)
            await self.websocket.close_connections(SHUTDOWN_GRACE)
        if tasks:  # an action must not outlive the backend it acts on
            _done, late = await asyncio.wait(set(tasks), timeout=SHUTDOWN_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.service.aclose()
        self.websocket.flush_log()
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

    def _tokens_changed(self, tokens: Tokens) -> None:
        self.backend.tokens_fingerprint = tokens.fingerprint
        self.websocket.credentials_changed(tokens)

    def _new_connection(self) -> GuardedConnection:
        return GuardedConnection(
            self.websocket,
            config=self.config,
            registry=self.connections,
            metrics=self.metrics,
            server_header=SERVER_NAME,
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
