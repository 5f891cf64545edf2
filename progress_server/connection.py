"""One client's connection, with the limits that must hold below the handler.

websockets answers pings and parses handshakes by itself, before any handler of ours
runs. A peer can therefore cost the server memory and time without ever sending a
message: a flood of pings makes pongs pile up unsent when it does not read, and a
handshake can carry a megabyte of headers before the token is checked.
:class:`GuardedConnection` is the ``create_connection`` of :func:`websockets.serve`
that bounds both:

- the handshake, to ``max_handshake_bytes`` (431 past it) and, through websockets'
  ``open_timeout``, to ``handshake_timeout`` seconds;
- control frames, which draw on the connection's :class:`~.limits.MessageBudget`
  like messages do: a flood of them ends in close 1008;
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
from .routes import error_response

__all__ = ["FEED_SLICE", "GuardedConnection"]

logger = logging.getLogger(__name__)

#: Bytes fed to the WebSocket parser at a time.
FEED_SLICE = 4096

CONTROL_OPCODES = (Opcode.PING, Opcode.PONG)


class GuardedConnection(ServerConnection):
    """A :class:`~websockets.asyncio.server.ServerConnection` under the server's limits.

    Args:
        protocol: websockets' Sans-I/O protocol of this connection.
        server: The websockets server it belongs to.
        config: The limits come from here.
        registry: Holds every open connection, handshakes included.
        **kwargs: What websockets passes to every connection.

    Attributes:
        budget: Messages and control frames share it; the handler takes from it too.
        dropped: Why the server cut this connection short, when it did.
    """

    def __init__(
        self,
        protocol: ServerProtocol,
        server: Server,
        *,
        config: ServerConfig,
        registry: set[GuardedConnection],
        **kwargs: Any,
    ) -> None:
        super().__init__(protocol, server, **kwargs)
        self.config = config
        self.registry = registry
        self.budget = MessageBudget(
            config.rate_limit, config.rate_burst, config.flood_tolerance, self.loop.time()
        )
        self.dropped: str | None = None
        self._handshake_bytes = 0

    @property
    def short_id(self) -> str:
        return self.id.hex[:12]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.registry.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        for start in range(0, len(data), FEED_SLICE):
            if self.transport.is_closing() or self.dropped is not None:
                return  # what is left of a flood is not worth parsing
            piece = data[start : start + FEED_SLICE]
            if self.request is None:
                self._handshake_bytes += len(piece)
            super().data_received(piece)
            if self.request is None and self._handshake_bytes > self.config.max_handshake_bytes:
                self._refuse_handshake()
                return
            queued = self.transport.get_write_buffer_size()
            if queued > self.config.send_buffer_cap:
                self.drop(f"{queued} bytes queued, over the cap of {self.config.send_buffer_cap}")
                return

    def process_event(self, event: Any) -> None:
        if (
            isinstance(event, Frame)
            and event.opcode in CONTROL_OPCODES
            and self.budget.take(self.loop.time()) is Verdict.CLOSE
        ):
            self._close_for_flooding()
            return
        super().process_event(event)

    def over_cap(self) -> bool:
        """Whether more than ``send_buffer_cap`` bytes wait for this client."""
        return self.transport.get_write_buffer_size() > self.config.send_buffer_cap

    def drop(self, reason: str) -> None:
        """Cut the connection at once, discarding whatever is queued for it."""
        if self.dropped is None:
            self.dropped = reason
            logger.warning("client %s dropped: %s", self.short_id, reason)
        self.transport.abort()

    def _close_for_flooding(self) -> None:
        """Close with 1008 as for a message flood, and stop reading what follows."""
        if self.dropped is not None:
            return
        self.dropped = "flooding with control frames"
        logger.warning("client %s: closed for flooding (pings or pongs)", self.short_id)
        if self.protocol.state is ConnectionState.OPEN:
            # Sends the close frame and half-closes; the rest of the input is discarded.
            self.protocol.fail(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
            self.send_data()
        # Nothing more is read: the flood stops costing CPU, and stalls in the kernel.
        self.transport.pause_reading()
        # A flooder that does not read never completes the closing handshake.
        self.loop.call_later(self.close_timeout or 0.0, self.transport.abort)

    def _refuse_handshake(self) -> None:
        limit = self.config.max_handshake_bytes
        self.dropped = f"handshake over {limit} bytes"
        if self.protocol.eof_sent:  # websockets refused it already (a malformed request)
            self.transport.close()
            return
        logger.warning(
            "refused a handshake from %s: its headers are over %d bytes",
            _peer(self.transport.get_extra_info("peername")),
            limit,
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
