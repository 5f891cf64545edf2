"""The connection to progress-server, kept up by its reconnect loop; no UI.

Both ``progress-tui`` and ``progress-ctl`` drive a :class:`ProgressClient`: they iterate
over :meth:`ProgressClient.events` and call :meth:`ProgressClient.send`. The events are
pulled, not queued: while a consumer is busy nothing piles up in the client (websockets
keeps at most a few frames and then stops reading the socket).

The client connects, receives and sends; the rest is in the modules it stands on: what
each message means (:mod:`.events`, which skips invalid ones and gives up a connection
that keeps sending them), what went wrong and whether trying again can help
(:mod:`.failures`), which URL to try next and when (:mod:`.failover`), and the guard
against a flooding server (:mod:`.connection`).

A handshake the server refuses for good (HTTP 4xx: a wrong path, a missing token, a
foreign host) ends the loop with :class:`~.events.Closed`, its reason the server's own
sentence; one it refuses for now (5xx, 503 when full, 429) is retried, no sooner than
its ``Retry-After`` asks. Connection events are logged at INFO (progress-tui's log
file).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from progress_protocol import __version__
from progress_protocol.messages import NAME_HEADER, Action, Request, clean_name, encode_request
from progress_protocol.urls import safe_url

from .connection import GuardedClientConnection
from .events import (
    MAX_INVALID_MESSAGES,
    ClientEvent,
    Closed,
    Connected,
    Connecting,
    ConnectionLost,
    ServerError,
    Session,
    Waiting,
)
from .failover import Failover, Wait
from .failures import describe_close, describe_failure, is_permanent, retry_after
from .reconnect import ReconnectPolicy
from .wording import describe_exception, printable

__all__ = ["DEFAULT_URL", "NotConnected", "ProgressClient", "check_url", "tls_context"]

logger = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:3003/progress"


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
        reconnect: False to stop (with :class:`~.events.Closed`) once every URL failed or was lost
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
        agent: The program, named in the User-Agent (``progress-tui``): the server
            tells who watches from what in its presence list.

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
        agent: str = "progress-client",
    ) -> None:
        given = [url] if isinstance(url, str) else list(url)
        if not given:
            raise ValueError("no URL given")
        # The same URL twice would count one dead instance twice.
        self._connect_urls = tuple(dict.fromkeys(check_url(each) for each in given))
        self.urls = tuple(safe_url(each) for each in self._connect_urls)
        self.stable_after = stable_after
        self.agent = agent
        self.token = token
        self.name = clean_name(name) if name else None
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
        #: The decisions of the running loop (of the last one once it stopped).
        self._failover: Failover | None = None
        self._connection: ClientConnection | None = None
        self._session: Session | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._request_ids = itertools.count(1)
        self._closer: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The URL of the current connection or attempt (the next one while waiting, the
        last one once stopped), as shown to people and in logs: without a token."""
        return self.urls[0 if self._failover is None else self._failover.index]

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
        back the next attempt to that URL. (These decisions are :class:`.Failover`'s.)

        A loop that ended otherwise than by :meth:`close` can be started again by
        calling ``events()`` anew (e.g. the user asks to try again after a refusal): it
        begins at attempt 1 on the first URL, with every URL and a fresh backoff. After
        :meth:`close` it yields ``Closed("closed")`` at once.
        """
        failover = self._failover = Failover(
            len(self.urls), self.policy, reconnect=self.reconnect, stable_after=self.stable_after
        )
        self._wake.clear()
        loop = asyncio.get_running_loop()
        error, refused = "closed", False
        while not self._closing:
            attempt = failover.begin()
            url = self.url
            logger.debug("connecting to %s (attempt %d)", url, attempt)
            yield Connecting(url, attempt)
            try:
                connection = await self._connect(failover.index)
            except Exception as exc:
                error, refused = describe_failure(exc, url, token=self.token), is_permanent(exc)
                failover.failed(permanent=refused, retry_after=retry_after(exc))
                if failover.refused_everywhere:
                    break
                if refused:
                    logger.info(
                        "leaving out %s until the client starts again: %s "
                        "(trying again cannot help)",
                        url,
                        error,
                    )
            else:
                refused = False
                failover.connected(loop.time())
                session = Session(url)
                async with aclosing(self._receive(connection, session)) as received:
                    async for event in received:
                        yield event
                if self._closing:
                    break
                error, worked = self._ended(connection, session)
                failover.lost(loop.time(), worked=worked)
                yield ConnectionLost(url, error, connection.close_code)
            wait = failover.next(loop.time())
            if wait is None:
                break
            self._log_wait(url, error, wait)
            yield Waiting(self.url, wait.delay, wait.retry_at, wait.attempt, error, refused)
            await self._sleep(wait.delay)
            # A reconnect_now() during the wait has been served by waking it: the next
            # failure waits out its backoff again.
            failover.waited()
        yield self._stopped(error, failover)

    async def _connect(self, index: int) -> ClientConnection:
        """One attempt to open a connection to the URL at ``index``."""
        return await connect(
            self._connect_urls[index],
            create_connection=GuardedClientConnection,
            open_timeout=self.open_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            user_agent_header=f"{self.agent}/{__version__}",
            additional_headers=self._headers(),
            # websockets refuses a TLS context for a ws:// URL.
            ssl=self.ssl_context if self.urls[index].startswith("wss:") else None,
        )

    def _log_wait(self, url: str, error: str, wait: Wait) -> None:
        """Say which URL is tried next, when, and why the one at ``url`` is not."""
        why = f", the server asked to wait {wait.asked:.3g} s" if wait.asked else ""
        if len(self.urls) == 1:
            logger.info(
                "retrying %s in %.1f s (attempt %d%s): %s",
                url,
                wait.delay,
                wait.attempt,
                why,
                error,
            )
        else:
            logger.info(
                "trying %s in %.1f s (attempt %d%s); %s: %s",
                self.url,
                wait.delay,
                wait.attempt,
                why,
                url,
                error,
            )

    def _stopped(self, error: str, failover: Failover) -> Closed:
        """The loop's last event, logged: closed by its owner, or given up."""
        if self._closing:
            logger.info("closed the connection to %s", self.url)
            return Closed("closed")
        permanent = failover.refused_everywhere
        logger.info(
            "gave up on %s: %s%s",
            ", ".join(self.urls),
            error,
            " (trying again cannot help)" if permanent else "",
        )
        return Closed(error, permanent=permanent)

    async def _receive(
        self, connection: ClientConnection, session: Session
    ) -> AsyncGenerator[ClientEvent, None]:
        """The events of one live connection, until it ends or is given up; then, or
        when the consumer stops iterating, the connection is closed."""
        self._connection, self._session = connection, session
        try:
            ping = asyncio.create_task(self._first_ping(connection))
            try:
                async for data in connection:
                    event = session.receive(data)
                    if session.failure is not None:
                        break
                    self._log_event(event)
                    if event is not None:
                        yield event
            except ConnectionClosed:
                pass
            except Exception as exc:
                # A bug, or data that got past the decoder: this connection is given up
                # and retried with the backoff; the loop itself goes on. The traceback
                # goes to the log (progress-tui's log file), never to the screen.
                logger.exception("unexpected error on the connection to %s", self.url)
                session.failure = f"an unexpected error ({describe_exception(exc)})"
            finally:
                ping.cancel()
            if session.failure is not None:
                # 1002 protocol error: the server broke the protocol; 1011: we failed.
                if session.invalid >= MAX_INVALID_MESSAGES:
                    await connection.close(CloseCode.PROTOCOL_ERROR, "invalid messages")
                else:
                    await connection.close(CloseCode.INTERNAL_ERROR, "client error")
        finally:
            self._connection = self._session = None
            await connection.close()

    def _log_event(self, event: ClientEvent | None) -> None:
        """The events worth a line in the log: a connection, a refused request."""
        match event:
            case Connected(server=server, client_id=client_id):
                logger.info("connected to %s (%s, client id %s)", self.url, server, client_id)
            case ServerError(error=error):
                logger.info(
                    "the server refused request %s: %s (%s)",
                    error.request_id,
                    error.message,
                    error.code,
                )

    def _ended(self, connection: ClientConnection, session: Session) -> tuple[str, bool]:
        """Why the connection ended, logged, and whether it worked: the server said hello
        and the client did not give the connection up."""
        guard = connection.failure if isinstance(connection, GuardedClientConnection) else None
        failure = session.failure or guard
        error = failure or describe_close(connection)
        logger.info(
            "lost the connection to %s: %s (close code %s, reason %r)",
            self.url,
            error,
            connection.close_code,
            printable(connection.close_reason or "", limit=123),
        )
        return error, session.greeted and failure is None

    async def _first_ping(self, connection: ClientConnection) -> None:
        """Measure the round-trip time at once rather than at the first keepalive."""
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(await connection.ping(), self.ping_timeout)

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        self._wake.clear()

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
        connection, session = self._connection, self._session
        if connection is None or session is None or not session.greeted:
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
            connection.close(CloseCode.INTERNAL_ERROR, "client error")
        )

    def reconnect_now(self) -> None:
        """Try again now: skip the wait, or drop the live connection and reconnect.

        Once :meth:`events` ended with :class:`Closed`, there is no loop to hurry:
        iterate ``events()`` anew instead.
        """
        if self._failover is not None:
            self._failover.reconnect_now()
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
