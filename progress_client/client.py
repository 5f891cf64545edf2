"""The connection to progress-server, with its reconnect loop; no UI.

Both ``progress-tui`` and ``progress-ctl`` drive a :class:`ProgressClient`: they iterate
over :meth:`ProgressClient.events` and call :meth:`ProgressClient.send`. The events are
pulled, not queued: while a consumer is busy nothing piles up in the client (websockets
keeps at most a few frames and then stops reading the socket).

The server is not trusted: every message goes through the protocol's bounded decoder,
a message that fails it is skipped, and a connection that keeps sending such messages
is given up and retried with the backoff (see :class:`_Session`).

A handshake the server refuses for good (HTTP 4xx: a wrong path, a missing token, a
foreign host) ends the loop with :class:`Closed`, its reason the server's own sentence;
one it refuses for now (5xx, 503 when full, 429) is retried, no sooner than its
``Retry-After`` asks. Connection events are logged at INFO (progress-tui's log file).

Given several URLs (instances that share one calculation through Redis), the client
fails over: each attempt after a failure or a loss goes to the next URL in turn, at
once while some URL has not failed since the last lasting connection, and with the
backoff once every one has. A URL refused for good is left out; the loop stops when
every URL is.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.http11 import Response

from progress_protocol import __version__
from progress_protocol.messages import (
    NAME_HEADER,
    PROTOCOL_VERSION,
    Ack,
    Action,
    Clients,
    Error,
    Hello,
    History,
    ProtocolError,
    Request,
    StateMessage,
    Unknown,
    clean_name,
    decode_server_message,
    encode_request,
)
from progress_protocol.states import Run, StateSnapshot
from progress_protocol.urls import safe_url

from .connection import GuardedClientConnection
from .reconnect import ReconnectPolicy
from .wording import describe_exception, printable

__all__ = [
    "DEFAULT_URL",
    "MAX_INVALID_MESSAGES",
    "MAX_RETRY_AFTER",
    "NOT_TLS",
    "ActionAccepted",
    "ClientEvent",
    "ClientsChanged",
    "Closed",
    "Connected",
    "Connecting",
    "ConnectionLost",
    "ConnectionStatus",
    "HistoryReceived",
    "NotConnected",
    "ProgressClient",
    "ServerError",
    "StateReceived",
    "Waiting",
    "check_url",
    "describe_failure",
    "is_permanent",
    "retry_after",
    "tls_context",
]

logger = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:3003/progress"

#: Invalid messages one connection may send before the client gives it up. A few are
#: skipped (a glitch, a newer server's field); a stream of them is a broken server.
MAX_INVALID_MESSAGES = 5

#: The longest wait a server's ``Retry-After`` can impose, in seconds: a larger value
#: (or a hostile one) is cut to it, so that a client never looks dead for long.
MAX_RETRY_AFTER = 60.0

#: The 4xx statuses that say "not now" rather than "no": they are retried.
_TRANSIENT_CLIENT_ERRORS = frozenset({408, 425, 429})


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
class HistoryReceived:
    """The last finished calculations, newest first."""

    runs: tuple[Run, ...]


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
    """The live connection to ``url`` ended, or the client gave it up (``reason`` says
    which)."""

    url: str
    reason: str
    code: int | None


@dataclass(frozen=True, slots=True)
class Waiting:
    """The client waits ``delay`` seconds, until ``retry_at`` (loop time), before
    ``attempt``, which goes to ``url``.

    Attributes:
        error: Why the last attempt or connection failed: the one to the URL of the
            :class:`Connecting` or :class:`ConnectionLost` just before, which is another
            URL than ``url`` when the client fails over.
        permanent: That URL refused the handshake for good: it is left out until the
            loop starts again (:meth:`ProgressClient.events` anew).
    """

    url: str
    delay: float
    retry_at: float
    attempt: int
    error: str
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class Closed:
    """The loop stopped: closed by its owner (``reason`` is "closed"), refused for good,
    or failed with reconnecting off.

    Attributes:
        reason: Why, as a phrase safe to show: the last failure's (that of
            :attr:`ProgressClient.url`); with several URLs, the :class:`Waiting` events
            before it told the others'.
        permanent: Trying again cannot help until the settings change: the server (every
            URL's) refused the handshake for good (HTTP 400, 401, 403, 404, 426...) or
            its certificate is not trusted.
    """

    reason: str
    permanent: bool = False


ClientEvent = (
    Connecting
    | Connected
    | StateReceived
    | ClientsChanged
    | HistoryReceived
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


def tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """The TLS settings of wss:// connections: the system's authorities, or ``cafile``'s.

    Raises:
        ValueError: With a sentence, if ``cafile`` cannot be read or holds no certificate.
    """
    try:
        return ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as exc:  # before OSError: it is one
        if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND":
            raise ValueError(f"{cafile} holds no PEM certificate") from None
        raise ValueError(f"{cafile} holds an invalid PEM certificate") from None
    except OSError as exc:
        raise ValueError(f"cannot read {cafile}: {(exc.strerror or str(exc)).lower()}") from None


class _Session:
    """What one connection has sent so far, and whether the client gives it up. Pure.

    Attributes:
        greeted: The server said hello.
        failure: Why the client gives this connection up, or None.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.greeted = False
        self.failure: str | None = None
        self.invalid = 0
        self.stale = 0
        self.last: StateSnapshot | None = None

    def receive(self, data: str | bytes) -> ClientEvent | None:
        """The event of one message, or None for a message to skip."""
        try:
            message = decode_server_message(data)
        except ProtocolError as exc:
            self.invalid += 1
            logger.warning("ignored an invalid message from the server: %s", exc.message)
            if self.invalid >= MAX_INVALID_MESSAGES:
                self.failure = f"the server sent invalid messages ({exc.message.rstrip('.')})"
            return None
        match message:
            case Unknown():
                # A newer server's message: skipped without a word, and never counted.
                return None
            case Hello():
                if message.protocol != PROTOCOL_VERSION:
                    logger.warning("the server speaks protocol %d", message.protocol)
                self.greeted = True
                return Connected(self.url, message.server, message.client_id)
            case StateMessage(snapshot=snapshot):
                last = self.last
                # Each change has a larger seq: an older state (a reordering proxy, a
                # broken server) would show the past as the present. An equal seq is a
                # repeat (a status reply) only if nothing else differs.
                if last is not None and (
                    snapshot.seq < last.seq or (snapshot.seq == last.seq and snapshot != last)
                ):
                    self.stale += 1
                    if self.stale <= MAX_INVALID_MESSAGES:  # bounded: a flood fills no log
                        logger.warning(
                            "dropped a state with seq %d after seq %d", snapshot.seq, last.seq
                        )
                    return None
                self.last = snapshot
                return StateReceived(snapshot)
            case Clients(count=count):
                return ClientsChanged(count)
            case History(runs=runs):
                return HistoryReceived(runs)
            case Ack():
                return ActionAccepted(message)
            case Error():
                return ServerError(message)
        return None  # pragma: no cover - every type is matched above


class ProgressClient:
    """A client of progress-server that keeps itself connected.

    Args:
        url: The server's WebSocket URL, or the URLs of several instances that share one
            calculation, tried in this order (the same URL twice counts once). A
            ``?token=`` in one is never shown: :attr:`url` and :attr:`urls`, which
            events and messages carry, hide it.
        policy: When to try again after a failure; reset after a connection that worked
            for ``stable_after`` seconds. With several URLs, it applies once every URL
            failed in a row; until then the next URL is tried at once.
        reconnect: False to stop (with :class:`Closed`) once every URL failed or was lost
            once; with one URL, at the first failure or loss.
        open_timeout: How long one connection attempt may take.
        ping_interval: How often a keepalive ping goes out.
        ping_timeout: How long a pong may take before the server counts as dead.
        token: The server's shared token, sent as ``Authorization: Bearer``.
        name: What this client calls itself; the server attributes its actions to it.
        cafile: PEM file of the certificate authorities to trust for wss:// URLs;
            by default the system's.
        stable_after: How long a connection must last for its end to start the backoff
            afresh (and, with several URLs, for each of them to count as untried).

    Attributes:
        urls: Every URL, as shown (without a token), in the order they are tried.

    Raises:
        ValueError: If no URL is given, one is not a WebSocket URL, or ``cafile`` holds
            no certificate.
    """

    def __init__(
        self,
        url: str | Sequence[str] = DEFAULT_URL,
        *,
        policy: ReconnectPolicy | None = None,
        reconnect: bool = True,
        open_timeout: float = 5.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 5.0,
        token: str | None = None,
        name: str | None = None,
        cafile: str | None = None,
        stable_after: float = 5.0,
    ) -> None:
        given = [url] if isinstance(url, str) else list(url)
        if not given:
            raise ValueError("no URL given")
        # The same URL twice would count one dead instance twice.
        self._connect_urls = tuple(dict.fromkeys(check_url(each) for each in given))
        self.urls = tuple(safe_url(each) for each in self._connect_urls)
        self._index = 0
        self.stable_after = stable_after
        self.token = token
        self.name = clean_name(name) if name else None
        #: The id the server gave this connection (hello); its actions carry it in ``by``.
        self.client_id: str | None = None
        #: The history the server sent last; kept across reconnections.
        self.history: tuple[Run, ...] | None = None
        secure = any(each.startswith("wss:") for each in self.urls)
        self.ssl_context = tls_context(cafile) if secure else None
        self.policy = policy if policy is not None else ReconnectPolicy()
        self.reconnect = reconnect
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        #: How long closing waits for the server's close frame before it drops the
        #: connection (a UI quitting sets it short).
        self.close_timeout = 2.0
        self.status = ConnectionStatus.DISCONNECTED
        #: The latest state and clients count the server sent; kept across reconnections.
        self.snapshot: StateSnapshot | None = None
        self.clients: int | None = None
        self._connection: ClientConnection | None = None
        self._session: _Session | None = None
        self._wake = asyncio.Event()
        self._skip_wait = False
        self._closing = False
        self._request_ids = itertools.count(1)
        self._closer: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The URL of the current connection or attempt (the next one while waiting, the
        last one once stopped), as shown to people and in logs: without a token."""
        return self.urls[self._index]

    @property
    def rtt(self) -> float | None:
        """The last ping's round-trip time in seconds, None before the first."""
        connection = self._connection
        if connection is None or connection.latency == 0.0:
            return None
        return connection.latency

    async def events(self) -> AsyncGenerator[ClientEvent, None]:
        """Connect, and reconnect after every loss, yielding what happens.

        Ends with :class:`Closed` after :meth:`close`, after a refusal for good (of every
        URL), or, when ``reconnect`` is False, once every URL failed or was lost; never
        with an exception. Use it with ``contextlib.aclosing`` so that
        breaking out of the loop closes the connection. One iteration at a time.

        The first attempt goes to the first URL; after a failure or a loss, the next
        attempt goes to the next URL in turn. It goes at once if that URL has not failed
        since the last connection that lasted ``stable_after`` seconds (a dead instance
        costs one attempt, not a backoff), and after the backoff otherwise (every URL
        failed in a row: the servers are not hammered). A URL's ``Retry-After`` holds
        back the next attempt to that URL.

        A loop that ended otherwise than by :meth:`close` can be started again by
        calling ``events()`` anew (e.g. the user asks to try again after a refusal): it
        begins at attempt 1 on the first URL, with every URL and a fresh backoff. After
        :meth:`close` it yields ``Closed("closed")`` at once.
        """
        self.policy.reset()
        self._skip_wait = False
        self._wake.clear()
        self._index = 0
        loop = asyncio.get_running_loop()
        #: The URLs (indices) that failed since the last lasting connection.
        failed: set[int] = set()
        #: The URLs refused for good, left out of this loop.
        left_out: set[int] = set()
        #: The loop time before which a URL asked (Retry-After) not to be tried.
        not_before: dict[int, float] = {}
        attempt = 0
        error = "closed"
        while not self._closing:
            attempt += 1
            index = self._index
            url = self.url
            self.status = ConnectionStatus.CONNECTING
            logger.debug("connecting to %s (attempt %d)", url, attempt)
            yield Connecting(url, attempt)
            refused = False
            asked: float | None = None
            try:
                connection = await connect(
                    self._connect_urls[index],
                    create_connection=GuardedClientConnection,
                    open_timeout=self.open_timeout,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_timeout,
                    close_timeout=self.close_timeout,
                    user_agent_header=f"progress-client/{__version__}",
                    additional_headers=self._headers(),
                    # websockets refuses a TLS context for a ws:// URL.
                    ssl=self.ssl_context if url.startswith("wss:") else None,
                )
            except Exception as exc:
                error = describe_failure(exc, url, token=self.token)
                failed.add(index)
                if is_permanent(exc):
                    refused = True
                    left_out.add(index)
                    if len(left_out) == len(self.urls):
                        break
                    logger.info(
                        "leaving out %s until the client starts again: %s "
                        "(trying again cannot help)",
                        url,
                        error,
                    )
                asked = retry_after(exc)
            else:
                opened = loop.time()
                session = _Session(url)
                self._connection, self._session = connection, session
                try:
                    async for event in self._receive(connection, session):
                        yield event
                finally:
                    self._connection = self._session = None
                    await connection.close()
                if self._closing:
                    break
                guard = (
                    connection.failure if isinstance(connection, GuardedClientConnection) else None
                )
                failure = session.failure or guard
                error = failure or describe_close(connection)
                # A connection that worked starts the count of attempts again, but only
                # one that lasted resets the backoff and makes every URL worth trying at
                # once: one that said hello and then had to be given up, or servers that
                # greet and hang up over and over, are not hammered in a tight loop.
                if session.greeted and failure is None:
                    attempt = 0
                    if loop.time() - opened >= self.stable_after:
                        self.policy.reset()
                        failed.clear()
                failed.add(index)
                logger.info(
                    "lost the connection to %s: %s (close code %s, reason %r)",
                    url,
                    error,
                    connection.close_code,
                    printable(connection.close_reason or "", limit=123),
                )
                yield ConnectionLost(url, error, connection.close_code)
            now = loop.time()
            not_before.pop(index, None)
            if asked:
                not_before[index] = now + asked
            following = self._next_index(index, left_out)
            if not self.reconnect and following in failed:
                break  # every URL failed or was lost once
            self._index = following
            if following != index:  # what that URL asked for earlier, if anything
                asked = max(not_before.get(self._index, now) - now, 0.0)
            # reconnect_now(): the user asked, so no wait, not even a Retry-After.
            if self._skip_wait:
                delay = 0.0
            elif following in failed:  # every URL failed in a row
                delay = max(self.policy.next_delay(), asked or 0.0)
            else:
                delay = asked or 0.0
            self._skip_wait = False
            self.status = ConnectionStatus.RECONNECTING
            why = f", the server asked to wait {asked:.3g} s" if asked else ""
            if len(self.urls) == 1:
                logger.info(
                    "retrying %s in %.1f s (attempt %d%s): %s", url, delay, attempt + 1, why, error
                )
            else:
                logger.info(
                    "trying %s in %.1f s (attempt %d%s); %s: %s",
                    self.url,
                    delay,
                    attempt + 1,
                    why,
                    url,
                    error,
                )
            yield Waiting(self.url, delay, now + delay, attempt + 1, error, refused)
            await self._sleep(delay)
        self.status = ConnectionStatus.DISCONNECTED
        if self._closing:
            logger.info("closed the connection to %s", self.url)
            yield Closed("closed")
            return
        permanent = len(left_out) == len(self.urls)
        logger.info(
            "gave up on %s: %s%s",
            ", ".join(self.urls),
            error,
            " (trying again cannot help)" if permanent else "",
        )
        yield Closed(error, permanent=permanent)

    def _next_index(self, index: int, left_out: set[int]) -> int:
        """The URL after ``index`` in turn, skipping those left out (``index`` itself if
        it is the only one left)."""
        count = len(self.urls)
        for step in range(1, count + 1):
            candidate = (index + step) % count
            if candidate not in left_out:
                return candidate
        return index

    async def _receive(
        self, connection: ClientConnection, session: _Session
    ) -> AsyncIterator[ClientEvent]:
        """The events of one live connection, until it ends or is given up."""
        ping = asyncio.create_task(self._first_ping(connection))
        try:
            async for data in connection:
                event = session.receive(data)
                if session.failure is not None:
                    break
                match event:
                    case Connected(server=server, client_id=client_id):
                        self.status = ConnectionStatus.CONNECTED
                        self.client_id = client_id
                        logger.info(
                            "connected to %s (%s, client id %s)", self.url, server, client_id
                        )
                    case StateReceived(snapshot=snapshot):
                        self.snapshot = snapshot
                    case ClientsChanged(count=count):
                        self.clients = count
                    case HistoryReceived(runs=runs):
                        self.history = runs
                    case ServerError(error=error):
                        logger.info(
                            "the server refused request %s: %s (%s)",
                            error.request_id,
                            error.message,
                            error.code,
                        )
                if event is not None:
                    yield event
        except ConnectionClosed:
            pass
        except Exception as exc:
            # A bug, or data that got past the decoder: this connection is given up and
            # retried with the backoff; the loop itself goes on. The traceback goes to
            # the log (progress-tui's log file), never to the screen.
            logger.exception("unexpected error on the connection to %s", self.url)
            session.failure = f"an unexpected error ({describe_exception(exc)})"
        finally:
            ping.cancel()
        if session.failure is not None:
            # 1002 protocol error: the server broke the protocol; 1011: we failed.
            code = 1002 if session.invalid >= MAX_INVALID_MESSAGES else 1011
            await connection.close(code, "invalid messages" if code == 1002 else "client error")

    async def _first_ping(self, connection: ClientConnection) -> None:
        """Measure the round-trip time at once rather than at the first keepalive."""
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(await connection.ping(), self.ping_timeout)

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        self._wake.clear()
        # A reconnect_now() during the wait has been served by waking it: the next
        # failure waits out its backoff again.
        self._skip_wait = False

    def _headers(self) -> dict[str, str]:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.name:
            # Percent-encoded UTF-8: a header carries ASCII only.
            headers[NAME_HEADER] = quote(self.name, safe=" @.-_+:/()")
        return headers

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

    def abandon(self, reason: str) -> None:
        """Give up the live connection as failed, e.g. after its data broke the UI.

        It is closed (code 1011) and reported lost with ``reason``; the next attempt
        waits out the backoff, which this connection does not reset.
        """
        connection, session = self._connection, self._session
        if connection is None or session is None or session.failure is not None:
            return
        session.failure = reason
        # Kept: the event loop holds only a weak reference to a task.
        self._closer = asyncio.get_running_loop().create_task(
            connection.close(1011, "client error")
        )

    def reconnect_now(self) -> None:
        """Try again now: skip the wait, or drop the live connection and reconnect.

        Once :meth:`events` ended with :class:`Closed`, there is no loop to hurry:
        iterate ``events()`` anew instead.
        """
        self._skip_wait = True
        self._wake.set()
        connection = self._connection
        if connection is not None:
            # Kept: the event loop holds only a weak reference to a task.
            self._closer = asyncio.get_running_loop().create_task(connection.close())

    async def close(self) -> None:
        """Close the connection (code 1000) and end :meth:`events`: the close frame
        goes out at once, and the server's is awaited :attr:`close_timeout` at most."""
        self._closing = True
        self._wake.set()
        connection = self._connection
        if connection is not None:
            connection.close_timeout = self.close_timeout
            await connection.close()


def is_permanent(exc: BaseException) -> bool:
    """Whether trying again cannot help: a bad URL, an untrusted certificate, a handshake
    answered with a plain 2xx (the URL names an HTTP endpoint, not the WebSocket), or
    one refused with a 4xx status other than 408, 425 and 429 (the server said "no":
    wrong path, token, host or request; not "not now")."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if 200 <= status < 300:
            return True
        return 400 <= status < 500 and status not in _TRANSIENT_CLIENT_ERRORS
    return isinstance(exc, InvalidURI | ssl.SSLCertVerificationError)


def retry_after(exc: BaseException) -> float | None:
    """The wait a refused handshake's ``Retry-After: <seconds>`` asks for, at most
    :data:`MAX_RETRY_AFTER`; None without one (an HTTP date is not read)."""
    if not isinstance(exc, InvalidStatus):
        return None
    values = exc.response.headers.get_all("Retry-After")
    if len(values) != 1:
        return None
    value = values[0].strip()
    # Digits only (int() would take "1_0", " +5" or Unicode digits), and few of them.
    if not (value.isascii() and value.isdigit() and len(value) <= 10):
        return None
    return min(float(value), MAX_RETRY_AFTER)


def refusal_sentence(response: Response) -> str | None:
    """The server's sentence in a refused handshake's body: its protocol ``error``
    object, read by the shared (bounded, printable-only) decoder; None for any other
    body."""
    if not response.body:
        return None
    try:
        message = decode_server_message(bytes(response.body).decode())
    except (UnicodeDecodeError, ProtocolError):
        return None
    return message.message if isinstance(message, Error) else None


#: What OpenSSL says when the other end answers a TLS handshake with plain HTTP.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)
NOT_TLS = "the TLS handshake failed: the server does not speak TLS on this port (is it ws://?)"


def describe_failure(exc: BaseException, url: str, *, token: str | None = None) -> str:
    """A short phrase, safe to show, saying why a connection attempt failed."""
    return printable(_describe_failure(exc, url, token=token))


def _describe_failure(exc: BaseException, url: str, *, token: str | None) -> str:
    host = urlsplit(url).hostname or url
    secure = url.startswith("wss:")
    match exc:
        case InvalidStatus(response=response) if response.status_code == 401:
            if token:
                return "the server refused the token (HTTP 401)"
            return "the server needs a token (HTTP 401): use --token or PROGRESS_TOKEN"
        case InvalidStatus(response=response) if 200 <= response.status_code < 300:
            return (
                f"the server answered HTTP {response.status_code} instead of opening a "
                "WebSocket: is the path in the URL the WebSocket endpoint (/progress)?"
            )
        case InvalidStatus(response=response):
            status = f"HTTP {response.status_code}"
            sentence = refusal_sentence(response)
            if sentence is None:
                # Not our server's JSON (a proxy, another server): its status line.
                phrase = printable(response.reason_phrase, limit=64)
                status = f"{status} {phrase}".rstrip()
                return f"the server refused the connection ({status})"
            return f"the server refused the connection ({status}): {sentence}"
        case ssl.SSLCertVerificationError():
            return f"the server's certificate is not trusted ({exc.verify_message}); see --cafile"
        case ssl.SSLError() if exc.reason in _NOT_TLS_REASONS or isinstance(exc, ssl.SSLEOFError):
            return NOT_TLS
        case ssl.SSLError():
            return f"the TLS handshake failed ({exc.reason or exc})"
        case ConnectionResetError() if secure:
            # Raised by the TLS handshake (asyncio's sslproto) when the server hangs up on
            # it, as a plain WebSocket server does; a refused TCP connection is another
            # error, and one reset later, in the HTTP upgrade, is an InvalidMessage.
            return NOT_TLS
        case InvalidMessage() if not secure and isinstance(exc.__cause__, EOFError):
            return (
                "the server closed the connection before answering the handshake "
                "(is it a wss:// port, or is the server out of resources?)"
            )
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
    return describe_exception(exc)


def describe_close(connection: ClientConnection) -> str:
    """A short phrase, safe to show, saying why a live connection ended."""
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
    if code == 1009:
        return "the server sent a message over the size this client accepts (1009)"
    if code == 1000:
        return "closed (1000)"
    # The reason is the server's text: at most 123 bytes, but any characters.
    return printable(f"closed by the server ({code}{': ' + reason if reason else ''})")
