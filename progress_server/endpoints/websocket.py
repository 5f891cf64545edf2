"""The WebSocket endpoint: what happens when a client joins, sends a message, or leaves.

It is the session every connection reports to
(:class:`~progress_server.transport.connection.Session`): each request first goes to
the HTTP API's gate (:meth:`~.http_api.HttpApi.process_request`), and a handshake that
succeeds comes back here to join the :class:`~progress_server.hub.Hub`. Messages are
read and written with :mod:`progress_protocol.messages`; an action goes to the
:class:`~progress_server.service.CalculationService`, whose ack or error is sent back
as it is. Each client that comes and goes is logged, up to :data:`LOG_EACH` a second.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State as ConnectionState

from progress_protocol.messages import (
    Command,
    Error,
    ErrorCode,
    Hello,
    ProtocolError,
    ServerMessage,
    decode_request,
    encode,
)
from progress_protocol.states import Attribution

from ..hub import Hub, plural
from ..limits import Verdict
from ..logs import Burst
from ..service import CalculationService
from ..tokens import Tokens
from ..transport.connection import GuardedConnection
from ..users import User
from .http_api import HttpApi

__all__ = ["CREDENTIALS_CHANGED", "LOG_EACH", "REVOKED", "WebSocketEndpoint"]

logger = logging.getLogger(__name__)

#: Clients that come (and go) logged one by one each second; the rest are summed up.
LOG_EACH = 20

#: Where a client's id goes in the hello encoded once (ids are 12 hex digits).
HELLO_ID = "@client-id@"

#: The close code and reason of a connection whose token was taken out of the tokens
#: file: like HTTP's 401, in the range of codes for applications. The client does
#: not come back: its next handshake would be refused.
REVOKED = 4401
REVOKED_REASON = "token revoked"
#: A connection whose token now has another name or role is closed with 1012
#: (service restart): it reconnects at once, and its hello says who it now is.
CREDENTIALS_CHANGED = "credentials changed: reconnect"

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


class WebSocketEndpoint:
    """The session of every connection on the port; the clients it lets join are the
    hub's.

    Args:
        service: The calculation, its hub and its settings.
        http_api: Answers every request but a handshake, and checks handshakes first.
        connections: Every open connection, handshakes under way included; each adds
            and removes itself.
        server_name: The ``server`` of the hello.
    """

    def __init__(
        self,
        service: CalculationService,
        http_api: HttpApi,
        *,
        connections: set[GuardedConnection],
        server_name: str,
    ) -> None:
        self.service = service
        self.http_api = http_api
        self.connections = connections
        self.metrics = service.metrics
        #: HTTP answers and actions in flight: closing waits for them.
        self.tasks: set[asyncio.Task[None]] = set()
        self.server_name = server_name
        # Hello differs from one client to the next by the id and who it is: encoded
        # once for each who.
        self._hellos: dict[tuple[str | None, str], str] = {}
        #: Set when the last connection is gone while closing.
        self._all_closed: asyncio.Event | None = None
        # A line for each client that comes or goes, up to LOG_EACH a second; past it,
        # a line a second with how many more did.
        self._joins = Burst(LOG_EACH, functools.partial(self._log_burst, "connected"))
        self._leaves = Burst(LOG_EACH, functools.partial(self._log_burst, "disconnected"))

    # What the connections ask of their session (transport.connection.Session).

    @property
    def serving(self) -> bool:
        return self.service.serving

    def process_request(
        self, connection: GuardedConnection, request: Request
    ) -> Response | Awaitable[Response] | None:
        return self.http_api.process_request(connection, request)

    def opened(self, connection: GuardedConnection) -> None:
        """A client completed its handshake: it joins, or is told the server is full."""
        hub = self.service.hub
        assert hub is not None and connection.request is not None
        metrics = self.metrics
        if self.service.full:  # handshakes that raced past the check in process_request
            metrics.connections.labels(ErrorCode.SERVER_FULL).inc()
            connection.close(CloseCode.TRY_AGAIN_LATER, "server full")
            return
        client_id = connection.short_id
        user = connection.user
        assert user is not None  # the gate let it through
        # The file may have changed during its handshake.
        outdated = _outdated(user, self.http_api.access.tokens)
        if outdated is not None:
            connection.close(*outdated)
            return
        name = user.name
        connection.by = Attribution(client_id, name or client_id)
        hub.join(connection, self._hello(user).replace(HELLO_ID, client_id, 1))
        metrics.accepted.inc()
        if logger.isEnabledFor(logging.INFO) and self._joins.allow():
            peer = connection.peer
            logger.info(
                "client %s connected from %s%s (now %s)",
                client_id,
                peer,
                f" as {name!r}" if name else "",
                _connected(hub),
                extra={
                    "client_id": client_id,
                    "peer": peer,
                    "client_name": name,
                    "role": user.role,
                    "client": user.client,
                },
            )

    def _hello(self, user: User) -> str:
        key = (user.name, user.role)
        hello = self._hellos.get(key)
        if hello is None:
            if len(self._hellos) > 1024:
                self._hellos.clear()
            hello = self._hellos[key] = encode(
                Hello(
                    server=self.server_name,
                    client_id=HELLO_ID,
                    name=user.name,
                    role=user.role,
                    commands=user.commands,
                )
            )
        return hello

    def credentials_changed(self, tokens: Tokens) -> None:
        """The tokens file changed: close each connection whose token is gone (4401),
        or now names someone else or another role (1012: it comes back as them)."""
        revoked = changed = 0
        for connection in list(self.connections):
            user = connection.user
            if user is None:
                continue
            if connection.protocol.state is not ConnectionState.OPEN:
                continue  # a handshake under way: checked again as it completes
            outdated = _outdated(user, tokens)
            if outdated is not None:
                connection.close(*outdated)
                if outdated[0] == REVOKED:
                    revoked += 1
                else:
                    changed += 1
        if revoked or changed:
            logger.info(
                "tokens file changed: %s closed for a revoked token, %s for a changed name or role",
                plural(revoked, "connection"),
                plural(changed, "connection"),
                extra={"clients": revoked + changed},
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
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def closed(self, connection: GuardedConnection) -> None:
        """A connection is gone: a client that joined leaves, and the log says why."""
        hub = self.service.hub
        if hub is not None and connection in hub.clients:
            hub.leave(connection)
            reason, dropped = _close_reason(connection, self.service.config.ping_timeout)
            if dropped is not None:
                self.metrics.dropped.labels(dropped).inc()
            if logger.isEnabledFor(logging.INFO) and (
                dropped is not None or connection.dropped is not None or self._leaves.allow()
            ):
                client_id = connection.short_id
                logger.info(
                    "client %s disconnected, %s (now %s)",
                    client_id,
                    reason,
                    _connected(hub),
                    extra={
                        "client_id": client_id,
                        "peer": connection.peer,
                        "code": connection.close_code,
                        "reason": reason,
                    },
                )
        if self._all_closed is not None and not self.connections:
            self._all_closed.set()

    # Closing.

    async def close_connections(self, grace: float) -> None:
        """Close every client with 1001 and wait, at most ``grace`` seconds, for them
        all to be gone; handshakes under way meanwhile get their answer (503 for a
        WebSocket, the HTTP API's own). Whatever is left then is cut."""
        self._all_closed = asyncio.Event()
        for connection in list(self.connections):
            if connection.protocol.state is ConnectionState.OPEN:
                connection.close(CloseCode.GOING_AWAY)
        if self.connections:
            try:
                async with asyncio.timeout(grace):
                    await self._all_closed.wait()
            except TimeoutError:
                for connection in list(self.connections):
                    connection.abort()
                await asyncio.sleep(0)  # their connection_lost runs
        self._all_closed = None

    def flush_log(self) -> None:
        """Log the clients that came and went and are not summed up yet."""
        self._joins.flush()
        self._leaves.flush()

    def _log_burst(self, what: str, count: int) -> None:
        hub = self.service.hub
        logger.info(
            "%s more %s (now %s), not logged one by one: over %d a second",
            count,
            "client " + what if count == 1 else "clients " + what,
            _connected(hub) if hub is not None else "0 connected here",
            LOG_EACH,
            extra={"clients": count},
        )

    # Messages.

    def _reply(self, connection: GuardedConnection, data: str | bytes) -> Awaitable[None] | None:
        """Answer a status or history request, or an invalid message, at once; return
        an action (start, cancel) to await."""
        hub = self.service.hub
        assert hub is not None
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
            self._send_reply(connection, exc.to_error())
            return None
        except Exception:
            metrics.errors.labels(ErrorCode.INTERNAL_ERROR).inc()
            logger.exception(
                "client %s: unexpected error while handling a message", connection.short_id
            )
            connection.send(INTERNAL_ERROR)
            return None
        action = request.action
        metrics.messages.labels(action).inc()
        if action == "status":
            connection.send(hub.state_text)
            return None
        if action == "history":
            connection.send(hub.history_text)
            return None
        return self._perform(connection, action, request.request_id)

    async def _perform(
        self, connection: GuardedConnection, command: Command, request_id: str | None
    ) -> None:
        outcome = await self.service.perform(
            command, request_id, connection.by, user=connection.user
        )
        self._send_reply(connection, outcome)

    @staticmethod
    def _send_reply(connection: GuardedConnection, reply: ServerMessage) -> None:
        try:
            connection.send(encode(reply))
        except Exception:
            # The reply could not be encoded: the client still gets an answer, and the
            # connection stays up.
            logger.exception("client %s: the reply could not be sent", connection.short_id)
            connection.send(INTERNAL_ERROR)


def _outdated(user: User, tokens: Tokens) -> tuple[int, str] | None:
    """How to close the connection of ``user`` under ``tokens``, if it must be: 4401
    for a token taken out of the file, 1012 for one that now has another name or
    role; None while the file still says what it said."""
    if user.credential is None:
        return None  # no tokens file: nothing to revoke
    entry = tokens.identify_digest(user.credential)
    if entry is None:
        return REVOKED, REVOKED_REASON
    if (entry.name, entry.role) != (user.name, user.role):
        return CloseCode.SERVICE_RESTART, CREDENTIALS_CHANGED
    return None


def _connected(hub: Hub) -> str:
    """ "3 connected here", and with other instances "1 connected here, 3 in all"."""
    here = f"{len(hub.clients)} connected here"
    return f"{here}, {hub.count} in all" if hub.others_count else here


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
