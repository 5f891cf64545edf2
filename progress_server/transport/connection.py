"""One client's connection: websockets' Sans-I/O protocol on an asyncio transport.

websockets parses the handshake and the frames, answers pings and runs the closing
handshake (:class:`websockets.server.ServerProtocol`, its documented Sans-I/O layer);
:class:`GuardedConnection` moves bytes between it and the transport, the way
websockets' own asyncio connection does, without a task, a queue or a future per
client: a connection is callbacks, and only what must wait on the store runs as a
task (a client's start or cancel, an HTTP request's answer). What this costs and
saves is in docs/performance.md.

Around the parser it bounds what a peer can cost the server before any message
reaches the session it reports to (:class:`Session`: the WebSocket endpoint,
:class:`~progress_server.endpoints.websocket.WebSocketEndpoint`):

- the handshake, to ``max_handshake_bytes`` (431 past it) and ``handshake_timeout``
  seconds;
- messages, control frames and message fragments, which all draw on the connection's
  :class:`~.limits.MessageBudget`: a flood of them ends in close 1008;
- the closing handshake, to :data:`CLOSE_TIMEOUT`, whoever starts it;
- what is queued for the client, to ``send_buffer_cap`` bytes: past it the
  connection is dropped at once, whatever is queued (pongs, states, replies).

Incoming data is fed to websockets in slices, so that one large read (a megabyte of
pings) is checked every few kilobytes rather than parsed whole before any check.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http
import logging
import os
from collections.abc import Awaitable, Coroutine
from typing import Any, Protocol, cast

from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event
from websockets.protocol import State as ConnectionState
from websockets.server import ServerProtocol

from progress_protocol.messages import ErrorCode
from progress_protocol.states import Attribution

from ..config import ServerConfig
from ..limits import MessageBudget, Verdict
from ..metrics import Metrics
from ..users import User
from .frames import text_frame
from .responses import error_response

__all__ = ["CLOSE_TIMEOUT", "FEED_SLICE", "KEEPALIVE_SLICES", "GuardedConnection", "Session"]

logger = logging.getLogger(__name__)

#: How long closing waits for the client's close frame, at shutdown in particular.
CLOSE_TIMEOUT = 1.0

#: The keepalive pings the clients in this many slices, one a tick, each client once
#: per interval (see :class:`~.keepalive.Keepalive`).
KEEPALIVE_SLICES = 20

#: Bytes fed to the WebSocket parser at a time.
FEED_SLICE = 4096

WEBSOCKETS_LOGGER = logging.getLogger("websockets.server")

#: Frames charged to the budget as they arrive, besides whole messages: or one message
#: of 4096 empty fragments would cost the same as one of a single frame.
CHARGED_OPCODES = (Opcode.PING, Opcode.PONG, Opcode.CONT)

CONNECTING = ConnectionState.CONNECTING
OPEN = ConnectionState.OPEN

#: Messages held back while one of the client's actions is in flight; past this many,
#: its socket is not read until they are answered.
MAX_PENDING = 16


class Session(Protocol):
    """What a connection asks of the endpoint it reports to."""

    @property
    def serving(self) -> bool:
        """False once the server is closing: a handshake that completes gets 503."""

    def process_request(
        self, connection: GuardedConnection, request: Request
    ) -> Response | Awaitable[Response | None] | None:
        """An HTTP answer to ``request``, or None to go on with the WebSocket handshake."""

    def opened(self, connection: GuardedConnection) -> None:
        """The handshake succeeded: the client can be sent messages."""

    def received(
        self, connection: GuardedConnection, data: str | bytes, verdict: Verdict
    ) -> Awaitable[None] | None:
        """A message and what the budget said of it; an awaitable holds back the
        client's next messages until it is done (an action in flight)."""

    def closed(self, connection: GuardedConnection) -> None:
        """The TCP connection is gone, whether or not the handshake succeeded."""

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` (an HTTP answer, an action) as a task the server waits for when
        it closes."""


class GuardedConnection(asyncio.Protocol):
    """A WebSocket connection under the server's limits.

    Args:
        session: The endpoint it reports to.
        config: The limits come from here.
        registry: Holds every open connection, handshakes included.
        metrics: Counts the connections it drops.
        server_header: The ``Server`` header of its handshake response.

    Attributes:
        protocol: websockets' Sans-I/O protocol of this connection.
        transport: Set once the TCP (or TLS) connection is made.
        remote_address: The peer's address, as ``getpeername()`` gave it when the
            connection was made.
        short_id: 12 random hex digits that name the client.
        request: The handshake request, until the handshake is over.
        budget: Messages and control frames share it.
        dropped: Why the server cut this connection short, when it did.
        by: Who the client's actions are attributed to, once it joined.
        user: Who the server takes it for (name, role, kind of client), once the gate
            let its request through.
    """

    # No instance dict: 10,000 connections each save its size.
    __slots__ = (
        "_busy",
        "_close_deadline",
        "_closed",
        "_cork",
        "_fragments",
        "_handshake_deadline",
        "_head",
        "_held",
        "_paused",
        "_peer_eof",
        "_pending",
        "budget",
        "by",
        "config",
        "dropped",
        "expected_pong",
        "last_pong",
        "metrics",
        "protocol",
        "registry",
        "remote_address",
        "request",
        "server_header",
        "session",
        "short_id",
        "slice",
        "transport",
        "user",
        "writable",
    )

    def __init__(
        self,
        session: Session,
        *,
        config: ServerConfig,
        registry: set[GuardedConnection],
        metrics: Metrics,
        server_header: str,
    ) -> None:
        self.session = session
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.server_header = server_header
        self.protocol = ServerProtocol(max_size=config.max_message_bytes, logger=WEBSOCKETS_LOGGER)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # connection_made
        self.remote_address: Any = None
        #: Names the client in the log and to other clients; not a secret.
        self.short_id = os.urandom(6).hex()
        self.request: Request | None = None
        self.budget: MessageBudget = None  # type: ignore[assignment]  # connection_made
        self.dropped: str | None = None
        #: Open and not cut off: frames may be written (the hub's and keepalive's
        #: loops read this rather than ask websockets' protocol and the transport).
        self.writable = False
        self.by: Attribution | None = None
        self.user: User | None = None
        #: The payload of the keepalive's last ping, and the loop time of the last pong
        #: that carried it (see :class:`~.keepalive.Keepalive`).
        self.expected_pong: bytes | None = None
        self.last_pong = float("-inf")
        #: When in the keepalive's round this connection is pinged.
        self.slice = int(self.short_id, 16) % KEEPALIVE_SLICES
        #: The request, gathered until its headers end.
        self._head: bytearray | None = bytearray()
        #: What came after the request, held until the response has gone out.
        self._held: bytearray | None = None
        #: The frames of a fragmented message so far, and whether it is text.
        self._fragments: tuple[bool, list[bytes]] | None = None
        #: Messages held back while an action of this client's is in flight.
        self._pending: collections.deque[tuple[str | bytes, Verdict]] | None = None
        #: The action (or the HTTP answer) in flight.
        self._busy: asyncio.Task[None] | None = None
        #: Whether reading is paused for MAX_PENDING messages waiting.
        self._paused = False
        self._handshake_deadline: asyncio.TimerHandle | None = None
        self._close_deadline: asyncio.TimerHandle | None = None
        #: Made when someone waits for the connection to close.
        self._closed: asyncio.Future[None] | None = None
        #: The peer half-closed while its HTTP answer was being made.
        self._peer_eof = False
        #: What is written while the handshake's response is held back, to go with it.
        self._cork: bytearray | None = None

    @property
    def peer(self) -> str:
        """The peer's address and port, for the log: ``127.0.0.1:50112``, ``[::1]:50112``."""
        address = self.remote_address
        if isinstance(address, tuple) and len(address) >= 2:
            host = str(address[0])
            return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
        return "unknown"

    @property
    def close_code(self) -> int | None:
        return self.protocol.close_code

    # Sending.

    def send(self, text: str) -> None:
        """Queue one text message, without waiting; nothing once the connection closes.

        Raises:
            UnicodeEncodeError: If ``text`` holds a lone surrogate.
        """
        if self.writable:
            self.write(text_frame(text))
            self._check_queue()

    def write(self, data: bytes) -> None:
        """Write whole frames: with the handshake's response when it is held back."""
        if self._cork is not None:
            self._cork += data
        else:
            self.transport.write(data)

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; the connection is cut if the client has not
        finished it within :data:`CLOSE_TIMEOUT`."""
        if self.protocol.state is OPEN:
            self.protocol.send_close(code, reason)
            self.writable = False
            self.send_data()
        self._arm_close_deadline()

    async def wait_closed(self) -> None:
        """Return once the TCP connection is gone."""
        if self.protocol.state is ConnectionState.CLOSED and self._closed is None:
            return
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed)

    def fail(self, code: CloseCode, reason: str) -> None:
        """Close at once, without waiting (as websockets' keepalive does on a timeout):
        the close frame goes out, the rest of the input is discarded, and the
        connection is cut after the close timeout if the peer does not close it."""
        if self.protocol.state is OPEN:
            self.protocol.fail(code, reason)
            self.writable = False
            self.send_data()
        self._arm_close_deadline()

    def drop(self, reason: str, label: str) -> None:
        """Cut the connection at once, discarding whatever is queued for it.

        Args:
            reason: Why, for the log.
            label: Why, for the metrics (``progress_clients_dropped_total{reason}``).
        """
        if self.dropped is None:
            self.dropped = reason
            self.metrics.dropped.labels(label).inc()
            logger.warning(
                "client %s dropped: %s",
                self.short_id,
                reason,
                extra={"client_id": self.short_id, "reason": label},
            )
        self.abort()

    def abort(self) -> None:
        """Cut the TCP connection now, discarding whatever is queued."""
        self.writable = False
        self.transport.abort()

    def send_data(self) -> None:
        """Write what websockets has to send; its end of stream half-closes."""
        for data in self.protocol.data_to_send():
            if data:
                self.write(data)
                continue
            self._uncork()
            if self.transport.can_write_eof():
                # uvloop raises RuntimeError on a closing transport.
                with contextlib.suppress(Exception):
                    self.transport.write_eof()
            else:  # TLS cannot half-close; closing waits for the peer's TLS shutdown
                self.transport.close()
                self._arm_close_deadline()

    def _uncork(self) -> None:
        cork, self._cork = self._cork, None
        if cork:
            self.transport.write(bytes(cork))

    def _check_queue(self) -> None:
        queued = self.transport.get_write_buffer_size()
        if queued > self.config.send_buffer_cap:
            self.drop(
                f"{queued} bytes queued, over the cap of {self.config.send_buffer_cap}",
                "send_buffer",
            )

    def _arm_close_deadline(self) -> None:
        # A peer that does not read never completes the closing handshake, and one
        # that sent its close frame may never close TCP; a closing transport may wait
        # for ever for its buffer to drain (TLS waits 30 s for its own shutdown).
        if self._close_deadline is None and self in self.registry:  # not lost yet
            self._close_deadline = asyncio.get_running_loop().call_later(
                CLOSE_TIMEOUT, self.transport.abort
            )

    # asyncio's callbacks.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        # Read now, once: uvloop's transport raises ValueError when asked once closed,
        # and an HTTP answer is logged after the peer may have gone.
        self.remote_address = transport.get_extra_info("peername")
        loop = asyncio.get_running_loop()
        config = self.config
        self.budget = MessageBudget(
            config.rate_limit, config.rate_burst, config.flood_tolerance, loop.time()
        )
        self.registry.add(self)
        self._handshake_deadline = loop.call_later(
            config.handshake_timeout, self._handshake_timed_out
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable = False
        self.protocol.receive_eof()  # idempotent: the state is CLOSED from now on
        self.registry.discard(self)
        for deadline in (self._handshake_deadline, self._close_deadline):
            if deadline is not None:
                deadline.cancel()
        self._handshake_deadline = self._close_deadline = None
        self._pending = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self.session.closed(self)

    def data_received(self, data: bytes) -> None:
        if self._head is not None:
            self._gather_head(data)
        elif self._held is not None:
            self._hold(data)
        else:
            self._feed(data)

    def eof_received(self) -> bool | None:
        if (
            self._busy is not None
            and self.protocol.state is CONNECTING
            and self.transport.can_write_eof()
        ):
            # The peer half-closed after its request (HTTP/1.1 allows it: `nc -N`, some
            # proxies) while its answer is being made, an action perhaps: the answer
            # still goes out, then the connection closes (_respond). TLS has no
            # half-close: there the peer's close ends the connection, answer or not.
            self._peer_eof = True
            return True
        self.writable = False
        self.protocol.receive_eof()
        events = self.protocol.events_received()
        self.send_data()
        for event in events:
            self._process_event(event)
        # Returning None closes the transport once what is queued is written, which a
        # peer that does not read would put off for ever.
        self._arm_close_deadline()
        return None

    # The handshake.

    def _gather_head(self, data: bytes) -> None:
        """Hand websockets the request only once its headers are whole, and hold what
        follows them until the response has gone out.

        websockets parses whatever follows a request as WebSocket frames at once, so
        bytes after a plain HTTP request (a second request, say) would fail the
        connection before its response, and then the response itself would fail.
        Gathering first also bounds the headers in all, exactly, not only per line.
        """
        assert self._head is not None
        head = self._head
        if not head and data.find(b"\r\n\r\n") == len(data) - 4 and data[:1].isupper():
            # The usual case: the whole request in one read, and nothing after it.
            if len(data) > self.config.max_handshake_bytes:
                self._refuse_handshake()
                return
            self._head = None
            self._held = bytearray()
            self._feed(data)
            return
        head += data
        if not head[:1].isupper():
            # Not an HTTP request line at all: every method starts with a capital letter.
            # A TLS hello on the plain port (0x16) would otherwise wait for a line end
            # that never comes, until the handshake timeout: it is cut at once.
            self._head = None
            peer = self.peer
            logger.debug(
                "dropped a connection from %s: it does not speak HTTP (TLS on the plain port?)",
                peer,
                extra={"peer": peer, "reason": "not_http"},
            )
            self.abort()
            return
        limit = self.config.max_handshake_bytes
        # Only the new bytes and the three before them are searched: a peer sending
        # its headers a byte at a time costs linear time, not quadratic.
        end = head.find(b"\r\n\r\n", max(0, len(head) - len(data) - 3), limit)
        if end < 0:
            if len(head) >= limit:
                self._refuse_handshake()
            return
        self._head = None
        rest = bytes(head[end + 4 :])
        self._held = bytearray()
        self._feed(bytes(head[: end + 4]))  # may answer at once, and take what is held
        if not rest:
            return
        if self._held is not None:
            self._hold(rest)
        elif self.protocol.state is OPEN:
            self._feed(rest)  # frames a client sent right behind its request

    def _hold(self, data: bytes) -> None:
        assert self._held is not None
        self._held += data
        if len(self._held) > self.config.max_message_bytes + FEED_SLICE:
            self.drop("it sent too much before its handshake was answered", "flood")

    def _on_request(self, request: Request) -> None:
        self.request = request
        try:
            answer = self.session.process_request(self, request)
        except Exception:
            logger.exception("answering a request failed")
            answer = self._internal_error()
        if answer is None or isinstance(answer, Response):
            self._respond(answer)
        else:
            self._busy = self.session.spawn(self._respond_later(answer))

    async def _respond_later(self, answer: Awaitable[Response | None]) -> None:
        try:
            response = await answer
        except Exception:
            logger.exception("answering a request failed")
            response = self._internal_error()
        self._busy = None
        self._respond(response)

    def _internal_error(self) -> Response:
        return error_response(
            http.HTTPStatus.INTERNAL_SERVER_ERROR,
            ErrorCode.INTERNAL_ERROR,
            "The server failed to answer this request; see its log.",
        )

    def _respond(self, response: Response | None) -> None:
        protocol = self.protocol
        if protocol.state is not CONNECTING or self.transport.is_closing():
            # The peer left, or was cut off, while the answer was made: not the server's
            # fault, and anyone can do it, so not worth more than a debug line.
            if logger.isEnabledFor(logging.DEBUG):
                peer = self.peer
                logger.debug(
                    "%s left before its answer%s",
                    peer,
                    "" if response is None else f" ({response.status_code})",
                    extra={"peer": peer},
                )
            return
        assert self.request is not None
        if response is None:
            response = protocol.accept(self.request)
            if response.status_code == 101 and not self.session.serving:
                response = error_response(
                    http.HTTPStatus.SERVICE_UNAVAILABLE,
                    ErrorCode.SHUTTING_DOWN,
                    "The server is shutting down; try again in a moment.",
                    headers={"Retry-After": "1"},
                )
        response.headers["Server"] = self.server_header
        protocol.send_response(response)
        if self._handshake_deadline is not None:
            self._handshake_deadline.cancel()
            self._handshake_deadline = None
        held, self._held = self._held, None
        if protocol.state is OPEN:
            # The 101 and what joining sends (hello, state, history) in one write.
            self.writable = True
            self._cork = bytearray()
            try:
                self.send_data()
                self.session.opened(self)
            except Exception:
                logger.exception("client %s: joining failed", self.short_id)
                self.dropped = "the server failed to let it join (see the log)"
                self.fail(CloseCode.INTERNAL_ERROR, "")
            finally:
                self._uncork()
            # Nothing reads the handshake after this: it need not live as long as the
            # connection (2 KiB a client); websockets' parser still holds the request.
            self.request.headers.clear()
            self.request = None
            if held and protocol.state is OPEN:
                self._feed(bytes(held))  # frames a client sent before our 101
        else:
            # An HTTP answer: websockets half-closes; the client closes in turn.
            self.send_data()
            self.request = None
            if self._peer_eof:
                self.transport.close()  # it closed its side already: nothing more to read
            self._arm_close_deadline()

    def _handshake_timed_out(self) -> None:
        self._handshake_deadline = None
        if self.protocol.state is CONNECTING:
            if self._busy is not None:
                self._busy.cancel()
            self.transport.abort()

    def _refuse_handshake(self) -> None:
        limit = self.config.max_handshake_bytes
        self.dropped = f"handshake over {limit} bytes"
        self._head = None
        self.metrics.connections.labels(ErrorCode.REQUEST_TOO_LARGE).inc()
        peer = self.peer
        logger.warning(
            "refused a handshake from %s: its headers are over %d bytes",
            peer,
            limit,
            extra={"peer": peer, "reason": ErrorCode.REQUEST_TOO_LARGE},
        )
        response = error_response(
            http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode.REQUEST_TOO_LARGE,
            f"The request's headers are over {limit // 1024} KiB.",
        )
        response.headers["Server"] = self.server_header
        # Sends the response and half-closes; the rest of the input is discarded.
        self.protocol.send_response(response)
        self.send_data()
        self.transport.close()

    # Frames and messages.

    def _feed(self, data: bytes) -> None:
        """Feed websockets a few KiB at a time, checking the limits in between."""
        protocol = self.protocol
        transport = self.transport
        for start in range(0, len(data), FEED_SLICE):
            if transport.is_closing() or self.dropped is not None:
                return  # what is left of a flood is not worth parsing
            protocol.receive_data(
                data if len(data) <= FEED_SLICE else data[start : start + FEED_SLICE]
            )
            events = protocol.events_received()
            if protocol.state is not OPEN:  # a close frame, or a frame websockets refused
                self.writable = False
            self.send_data()  # pongs, a close frame in answer
            for event in events:
                self._process_event(event)
            if transport.is_closing():
                return
            self._check_queue()
            if self._close_deadline is None and protocol.close_expected():
                # The peer sent its close frame, or ours is answered: it has
                # CLOSE_TIMEOUT to close TCP.
                self._arm_close_deadline()

    def _process_event(self, event: Event) -> None:
        if not isinstance(event, Frame):
            if isinstance(event, Request):
                self._on_request(event)
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if event.fin:
                self._message(bytes(event.data), opcode is Opcode.TEXT)
            else:
                self._fragments = (opcode is Opcode.TEXT, [bytes(event.data)])
            return
        if opcode in CHARGED_OPCODES:
            now = asyncio.get_running_loop().time()
            if self.budget.take(now) is Verdict.CLOSE:
                self._close_for_flooding("pings, pongs or fragments")
                return
            if opcode is Opcode.PONG and event.data == self.expected_pong:
                self.last_pong = now
            elif opcode is Opcode.CONT and self._fragments is not None:
                text, parts = self._fragments
                parts.append(bytes(event.data))
                if event.fin:
                    self._fragments = None
                    self._message(b"".join(parts), text)

    def _message(self, data: bytes, text: bool) -> None:
        if not self.writable:
            return  # after a close frame, or cut off: not for us to answer
        message: str | bytes = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError as exc:
                self.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        verdict = self.budget.take(asyncio.get_running_loop().time())
        if verdict is Verdict.CLOSE:
            self._close_for_flooding("messages")
            return
        if self._busy is None:
            self._handle(message, verdict)
            return
        # An action is in flight: its reply goes out first. Pongs and close frames
        # are still read meanwhile; messages wait, up to MAX_PENDING, then the socket.
        if self._pending is None:
            self._pending = collections.deque()
        self._pending.append((message, verdict))
        if len(self._pending) >= MAX_PENDING and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def _handle(self, message: str | bytes, verdict: Verdict) -> None:
        action = self.session.received(self, message, verdict)
        if action is not None:
            self._busy = self.session.spawn(self._run(action))

    async def _run(self, action: Awaitable[None]) -> None:
        try:
            await action
        except Exception:  # the session answers for its own errors: this is a bug
            logger.exception("client %s: an action failed", self.short_id)
        finally:
            self._busy = None
        pending = self._pending
        while pending and self._busy is None and self.writable:
            self._handle(*pending.popleft())
        if self._busy is None or not self.writable:
            self._pending = pending = None
        if self._paused and (not pending or len(pending) < MAX_PENDING):
            self._paused = False
            if self.writable and self.dropped is None:
                self.transport.resume_reading()

    def _close_for_flooding(self, what: str) -> None:
        """Close with 1008, and stop reading what follows."""
        if self.dropped is not None:
            return
        self.dropped = f"flooding with {what}"
        self.metrics.dropped.labels("flood").inc()
        logger.warning(
            "client %s: closed for flooding (%s)",
            self.short_id,
            what,
            extra={"client_id": self.short_id, "reason": "flood"},
        )
        self.fail(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
        self._pending = None
        # Nothing more is read: the flood stops costing CPU, and stalls in the kernel.
        self.transport.pause_reading()
