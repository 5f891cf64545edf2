"""One client's connection, with the limits that must hold below the handler.

websockets answers pings and parses handshakes by itself, before any handler of ours
runs. A peer can therefore cost the server memory and time without ever sending a
message: a flood of pings makes pongs pile up unsent when it does not read, and a
handshake can carry a megabyte of headers before the token is checked.
:class:`GuardedConnection` is the ``create_connection`` of :func:`websockets.serve`
that bounds both:

- the handshake, to ``max_handshake_bytes`` (431 past it) and, through websockets'
  ``open_timeout``, to ``handshake_timeout`` seconds;
- control frames and message fragments, which draw on the connection's
  :class:`~.limits.MessageBudget` like messages do: a flood of them ends in close 1008;
- the closing handshake, to the close timeout, also when the peer starts it;
- what is queued for the client, to ``send_buffer_cap`` bytes: past it the
  connection is dropped at once, whatever is queued (pongs, states, replies).

Incoming data is fed to websockets in slices, so that one large read (a megabyte of
pings) is checked every few kilobytes rather than parsed whole before any check.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State as ConnectionState
from websockets.server import ServerProtocol

from .config import ServerConfig
from .limits import MessageBudget, Verdict
from .metrics import Metrics
from .routes import error_response

__all__ = ["FEED_SLICE", "KEEPALIVE_SLICES", "GuardedConnection"]

logger = logging.getLogger(__name__)

#: The keepalive pings the clients in this many slices, one a tick, each client once
#: per interval (see :class:`~.keepalive.Keepalive`).
KEEPALIVE_SLICES = 20

#: Bytes fed to the WebSocket parser at a time.
FEED_SLICE = 4096

#: Frames charged to the budget as they arrive. A whole message is charged when the
#: handler reads it; its continuation frames are charged here, or one message of 4096
#: empty fragments would cost the same as one of a single frame.
CHARGED_OPCODES = (Opcode.PING, Opcode.PONG, Opcode.CONT)


class GuardedConnection(ServerConnection):
    """A :class:`~websockets.asyncio.server.ServerConnection` under the server's limits.

    Args:
        protocol: websockets' Sans-I/O protocol of this connection.
        server: The websockets server it belongs to.
        config: The limits come from here.
        registry: Holds every open connection, handshakes included.
        metrics: Counts the connections it drops.
        **kwargs: What websockets passes to every connection.

    Attributes:
        budget: Messages and control frames share it; the handler takes from it too.
        dropped: Why the server cut this connection short, when it did.
    """

    # Slots, not the instance's dict: websockets' 27 attributes and these would make
    # it larger than CPython shares between instances (30 keys), 1.3 KiB a client.
    __slots__ = (
        "_close_deadline",
        "_head",
        "_held",
        "budget",
        "config",
        "dropped",
        "expected_pong",
        "last_pong",
        "metrics",
        "registry",
        "slice",
    )

    def __init__(
        self,
        protocol: ServerProtocol,
        server: Server,
        *,
        config: ServerConfig,
        registry: set[GuardedConnection],
        metrics: Metrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(protocol, server, **kwargs)
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.budget = MessageBudget(
            config.rate_limit, config.rate_burst, config.flood_tolerance, self.loop.time()
        )
        self.dropped: str | None = None
        #: The payload of the keepalive's last ping, and the loop time of the last pong
        #: that carried it (see :class:`~.keepalive.Keepalive`).
        self.expected_pong: bytes | None = None
        self.last_pong = float("-inf")
        #: When in the keepalive's round this connection is pinged.
        self.slice = self.id.int % KEEPALIVE_SLICES
        #: The request, gathered until its headers end.
        self._head: bytearray | None = bytearray()
        #: What came after the request, held until the response has gone out.
        self._held: bytearray | None = None
        self._close_deadline: asyncio.TimerHandle | None = None

    @property
    def short_id(self) -> str:
        return self.id.hex[:12]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.registry.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self)
        if self._close_deadline is not None:
            self._close_deadline.cancel()
        super().connection_lost(exc)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        await super().handshake(*args, **kwargs)
        held, self._held = self._held, None
        if held and self.protocol.state is ConnectionState.OPEN:
            self._feed(bytes(held))  # frames a client sent before our 101

    def data_received(self, data: bytes) -> None:
        if self._head is not None:
            self._gather_head(data)
        elif self._held is not None:
            self._hold(data)
        else:
            self._feed(data)

    def _gather_head(self, data: bytes) -> None:
        """Hand websockets the request only once its headers are whole, and hold what
        follows them until the response has gone out.

        websockets parses whatever follows a request as WebSocket frames at once, so
        bytes after a plain HTTP request (a second request, say) would fail the
        connection before its response, and then the response itself would fail.
        Gathering first also bounds the headers in all, exactly, not only per line.
        """
        assert self._head is not None
        self._head += data
        if not self._head[:1].isupper():
            # Not an HTTP request line at all (a TLS hello on a plain port, garbage):
            # websockets refuses it at once, rather than wait for headers to end.
            buffer, self._head = self._head, None
            self._feed(bytes(buffer))
            return
        limit = self.config.max_handshake_bytes
        end = self._head.find(b"\r\n\r\n", 0, limit)
        if end < 0:
            if len(self._head) >= limit:
                self._refuse_handshake()
            return
        buffer, self._head = self._head, None
        self._held = bytearray()
        self._feed(bytes(buffer[: end + 4]))
        self._hold(bytes(buffer[end + 4 :]))

    def _hold(self, data: bytes) -> None:
        assert self._held is not None
        self._held += data
        if len(self._held) > self.config.max_message_bytes + FEED_SLICE:
            self.drop("it sent too much before its handshake was answered", "flood")

    def _feed(self, data: bytes) -> None:
        """Feed websockets a few KiB at a time, checking the limits in between."""
        for start in range(0, len(data), FEED_SLICE):
            if self.transport.is_closing() or self.dropped is not None:
                return  # what is left of a flood is not worth parsing
            super().data_received(data[start : start + FEED_SLICE])
            queued = self.transport.get_write_buffer_size()
            if queued > self.config.send_buffer_cap:
                self.drop(
                    f"{queued} bytes queued, over the cap of {self.config.send_buffer_cap}",
                    "send_buffer",
                )
                return
            if self._close_deadline is None and self.protocol.close_expected():
                # websockets enforces its close timeout only when something is sent:
                # a peer that sent a close frame and never closes TCP would hold its
                # descriptor until the next keepalive ping.
                self._close_deadline = self.loop.call_later(
                    self.close_timeout or 0.0, self.transport.abort
                )

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode in CHARGED_OPCODES:
            now = self.loop.time()
            if self.budget.take(now) is Verdict.CLOSE:
                self._close_for_flooding()
                return
            if event.opcode is Opcode.PONG and event.data == self.expected_pong:
                self.last_pong = now
        super().process_event(event)

    def over_cap(self) -> bool:
        """Whether more than ``send_buffer_cap`` bytes wait for this client."""
        return self.transport.get_write_buffer_size() > self.config.send_buffer_cap

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
        self.transport.abort()

    def _close_for_flooding(self) -> None:
        """Close with 1008 as for a message flood, and stop reading what follows."""
        if self.dropped is not None:
            return
        self.dropped = "flooding with frames"
        self.metrics.dropped.labels("flood").inc()
        logger.warning(
            "client %s: closed for flooding (pings, pongs or fragments)",
            self.short_id,
            extra={"client_id": self.short_id, "reason": "flood"},
        )
        self.fail(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
        # Nothing more is read: the flood stops costing CPU, and stalls in the kernel.
        self.transport.pause_reading()

    def fail(self, code: CloseCode, reason: str) -> None:
        """Close at once, without waiting (as websockets' keepalive does on a timeout):
        the close frame goes out, the rest of the input is discarded, and the
        connection is cut after the close timeout if the peer does not close it."""
        if self.protocol.state is ConnectionState.OPEN:
            self.protocol.fail(code, reason)
            self.send_data()
        # A peer that does not read never completes the closing handshake.
        if self._close_deadline is None:
            self._close_deadline = self.loop.call_later(
                self.close_timeout or 0.0, self.transport.abort
            )

    def _refuse_handshake(self) -> None:
        limit = self.config.max_handshake_bytes
        self.dropped = f"handshake over {limit} bytes"
        self._head = None
        self.metrics.connections.labels("request_too_large").inc()
        peer = _peer(self.transport.get_extra_info("peername"))
        logger.warning(
            "refused a handshake from %s: its headers are over %d bytes",
            peer,
            limit,
            extra={"peer": peer, "reason": "request_too_large"},
        )
        response = error_response(
            http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_too_large",
            f"The request's headers are over {limit // 1024} KiB.",
        )
        # Sends the response and half-closes; the rest of the input is discarded.
        self.protocol.send_response(response)
        self.send_data()
        self.transport.close()


def _peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)
