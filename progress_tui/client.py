"""The connection to progress-server, with its reconnect loop; no UI.

Both ``progress-tui`` and ``progress-ctl`` drive a :class:`ProgressClient`: they iterate
over :meth:`ProgressClient.events` and call :meth:`ProgressClient.send`. The events are
pulled, not queued: while a consumer is busy nothing piles up in the client (websockets
keeps at most a few frames and then stops reading the socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from progress_server import __version__
from progress_server.calculation import StateSnapshot
from progress_server.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Action,
    Clients,
    Error,
    Hello,
    ProtocolError,
    Request,
    StateMessage,
    decode_server_message,
    encode_request,
)

from .reconnect import ReconnectPolicy

__all__ = [
    "DEFAULT_URL",
    "ActionAccepted",
    "ClientEvent",
    "ClientsChanged",
    "Closed",
    "Connected",
    "Connecting",
    "ConnectionLost",
    "ConnectionStatus",
    "NotConnected",
    "ProgressClient",
    "ServerError",
    "StateReceived",
    "Waiting",
    "check_url",
]

logger = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:3003/progress"


class ConnectionStatus(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # waiting before the next attempt
    DISCONNECTED = "disconnected"


# The events, in the order a consumer meets them.


@dataclass(frozen=True, slots=True)
class Connecting:
    """An attempt to connect begins."""

    url: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Connected:
    """The server said hello; its state follows at once."""

    url: str
    server: str
    client_id: str


@dataclass(frozen=True, slots=True)
class StateReceived:
    snapshot: StateSnapshot


@dataclass(frozen=True, slots=True)
class ClientsChanged:
    count: int


@dataclass(frozen=True, slots=True)
class ActionAccepted:
    ack: Ack


@dataclass(frozen=True, slots=True)
class ServerError:
    """The server refused a request; ``error.message`` is a sentence for a person."""

    error: Error


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """A live connection ended."""

    reason: str
    code: int | None


@dataclass(frozen=True, slots=True)
class Waiting:
    """The client waits ``delay`` seconds, until ``retry_at`` (loop time), before ``attempt``."""

    delay: float
    retry_at: float
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The client stopped for good: closed by its owner, or reconnecting is off."""

    reason: str


ClientEvent = (
    Connecting
    | Connected
    | StateReceived
    | ClientsChanged
    | ActionAccepted
    | ServerError
    | ConnectionLost
    | Waiting
    | Closed
)


class NotConnected(Exception):
    """An action was asked for while no connection is open."""


def check_url(url: str) -> str:
    """Return ``url`` if it is a ws:// or wss:// URL with a host.

    Raises:
        ValueError: With a sentence saying what is wrong.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a WebSocket URL like {DEFAULT_URL}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    return url


class ProgressClient:
    """A client of progress-server that keeps itself connected.

    Args:
        url: The server's WebSocket URL.
        policy: When to try again after a failure; reset after each success.
        reconnect: False to stop (with :class:`Closed`) at the first failure or loss.
        open_timeout: How long one connection attempt may take.
        ping_interval: How often a keepalive ping goes out.
        ping_timeout: How long a pong may take before the server counts as dead.
        token: The server's shared token, sent as ``Authorization: Bearer``.
        cafile: PEM file of the certificate authorities to trust for wss:// URLs;
            by default the system's.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        policy: ReconnectPolicy | None = None,
        reconnect: bool = True,
        open_timeout: float = 5.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 5.0,
        token: str | None = None,
        cafile: str | None = None,
    ) -> None:
        self.url = check_url(url)
        self.token = token
        self.ssl_context = (
            ssl.create_default_context(cafile=cafile) if self.url.startswith("wss:") else None
        )
        self.policy = policy if policy is not None else ReconnectPolicy()
        self.reconnect = reconnect
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.status = ConnectionStatus.DISCONNECTED
        #: The latest state and clients count the server sent; kept across reconnections.
        self.snapshot: StateSnapshot | None = None
        self.clients: int | None = None
        self._connection: ClientConnection | None = None
        self._wake = asyncio.Event()
        self._skip_wait = False
        self._closing = False
        self._request_ids = itertools.count(1)

    @property
    def rtt(self) -> float | None:
        """The last ping's round-trip time in seconds, None before the first."""
        connection = self._connection
        if connection is None or connection.latency == 0.0:
            return None
        return connection.latency

    async def events(self) -> AsyncGenerator[ClientEvent, None]:
        """Connect, and reconnect after every loss, yielding what happens.

        Ends with :class:`Closed` after :meth:`close`, or at the first failure when
        ``reconnect`` is False. Use it with ``contextlib.aclosing`` so that breaking
        out of the loop closes the connection.
        """
        attempt = 0
        while not self._closing:
            attempt += 1
            self.status = ConnectionStatus.CONNECTING
            yield Connecting(self.url, attempt)
            try:
                connection = await connect(
                    self.url,
                    open_timeout=self.open_timeout,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_timeout,
                    close_timeout=2.0,
                    user_agent_header=f"progress-client/{__version__}",
                    additional_headers=(
                        {"Authorization": f"Bearer {self.token}"} if self.token else None
                    ),
                    ssl=self.ssl_context,
                )
            except Exception as exc:
                error = describe_failure(exc, self.url, token=self.token)
                if is_final(exc):
                    break
            else:
                self._connection = connection
                try:
                    async for event in self._session(connection):
                        if isinstance(event, Connected):
                            attempt = 0
                            self.policy.reset()
                        yield event
                finally:
                    self._connection = None
                    await connection.close()
                error = describe_close(connection)
                if self._closing:
                    break
                yield ConnectionLost(error, connection.close_code)
            if not self.reconnect:
                break
            delay = 0.0 if self._skip_wait else self.policy.next_delay()
            self._skip_wait = False
            loop = asyncio.get_running_loop()
            self.status = ConnectionStatus.RECONNECTING
            yield Waiting(delay, loop.time() + delay, attempt + 1, error)
            await self._sleep(delay)
        self.status = ConnectionStatus.DISCONNECTED
        yield Closed("closed" if self._closing else error)

    async def _session(self, connection: ClientConnection) -> AsyncIterator[ClientEvent]:
        """The events of one live connection."""
        ping = asyncio.create_task(self._first_ping(connection))
        try:
            async for data in connection:
                try:
                    message = decode_server_message(data)
                except ProtocolError as exc:
                    logger.warning("ignored a message from the server: %s", exc.message)
                    continue
                match message:
                    case Hello():
                        if message.protocol != PROTOCOL_VERSION:
                            logger.warning("the server speaks protocol %d", message.protocol)
                        self.status = ConnectionStatus.CONNECTED
                        yield Connected(self.url, message.server, message.client_id)
                    case StateMessage(snapshot=snapshot):
                        self.snapshot = snapshot
                        yield StateReceived(snapshot)
                    case Clients(count=count):
                        self.clients = count
                        yield ClientsChanged(count)
                    case Ack():
                        yield ActionAccepted(message)
                    case Error():
                        yield ServerError(message)
        except ConnectionClosed:
            pass
        finally:
            ping.cancel()

    async def _first_ping(self, connection: ClientConnection) -> None:
        """Measure the round-trip time at once rather than at the first keepalive."""
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(await connection.ping(), self.ping_timeout)

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        self._wake.clear()

    async def send(self, action: Action) -> str:
        """Send an action; returns its request_id, echoed by the answer.

        Raises:
            NotConnected: If no connection is open.
        """
        connection = self._connection
        if connection is None or self.status is not ConnectionStatus.CONNECTED:
            raise NotConnected("not connected to the server")
        request_id = f"{action}-{next(self._request_ids)}"
        try:
            await connection.send(encode_request(Request(action, request_id)))
        except ConnectionClosed:
            raise NotConnected("the connection to the server was lost") from None
        return request_id

    def reconnect_now(self) -> None:
        """Try again now: skip the wait, or drop the live connection and reconnect."""
        self._skip_wait = True
        self._wake.set()
        connection = self._connection
        if connection is not None:
            asyncio.get_running_loop().create_task(connection.close())

    async def close(self) -> None:
        """Close the connection (code 1000) and end :meth:`events`."""
        self._closing = True
        self._wake.set()
        connection = self._connection
        if connection is not None:
            await connection.close()


def is_final(exc: BaseException) -> bool:
    """Whether trying again cannot help: a bad URL, a refused token or origin."""
    if isinstance(exc, InvalidStatus):
        return exc.response.status_code in (401, 403)
    return isinstance(exc, InvalidURI | ssl.SSLCertVerificationError)


def describe_failure(exc: BaseException, url: str, *, token: str | None = None) -> str:
    """A short phrase saying why a connection attempt failed."""
    host = urlsplit(url).hostname or url
    match exc:
        case InvalidStatus(response=response) if response.status_code == 401:
            if token:
                return "the server refused the token (HTTP 401)"
            return "the server needs a token (HTTP 401): use --token or PROGRESS_TOKEN"
        case InvalidStatus(response=response) if response.status_code == 403:
            return "the server refused this client's origin (HTTP 403)"
        case InvalidStatus(response=response) if response.status_code == 503:
            return "the server is full (HTTP 503)"
        case InvalidStatus(response=response):
            return f"the server refused the connection (HTTP {response.status_code})"
        case ssl.SSLCertVerificationError():
            return f"the server's certificate is not trusted ({exc.verify_message}); see --cafile"
        case ssl.SSLError():
            return f"the TLS handshake failed ({exc.reason or exc})"
        case InvalidURI():
            return f"invalid URL {url}"
        case ConnectionRefusedError():
            return "connection refused"
        case socket.gaierror():
            return f"cannot resolve {host}"
        case TimeoutError():
            return "timed out"
        case InvalidHandshake():
            return f"the handshake failed: {exc}"
        case OSError(strerror=str(reason)):
            return reason.lower()
    logger.warning("unexpected connection failure", exc_info=exc)
    return str(exc) or type(exc).__name__


def describe_close(connection: ClientConnection) -> str:
    """A short phrase saying why a live connection ended."""
    code = connection.close_code
    reason = connection.close_reason
    if code is None or code == 1006:
        # Our side gave up: keepalive pings went unanswered, or the TCP connection broke.
        received = connection.protocol.close_rcvd
        if received is None and connection.protocol.close_sent is not None:
            sent = connection.protocol.close_sent
            if sent.code == 1011:
                return "the server stopped answering pings"
        return "the connection was lost"
    if code == 1001:
        return "the server is going away (1001)"
    if code == 1000:
        return "closed (1000)"
    return f"closed by the server ({code}{': ' + reason if reason else ''})"
