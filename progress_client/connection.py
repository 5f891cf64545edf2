"""The client's connection, guarded against a flooding server like the server's.

websockets answers every ping with a pong on its own, before any code of ours runs. A
hostile server (or anyone in the middle of a ``ws://`` connection) that pings without
end and never reads would make the pongs pile up in the client's memory: 150 MiB in
12 s, without limit. :class:`GuardedClientConnection` is the ``create_connection`` of
:func:`websockets.asyncio.client.connect` that stops that: a flood of pings ends the
connection, and so does more than :data:`SEND_BUFFER_CAP` bytes waiting to be sent.
Either counts as a failed connection: it is retried with the backoff.

``create_connection`` is websockets' documented way to customize a connection, but it
has no documented hook that sees a ping: the one override of a method websockets calls
private, ``process_event``, is the smallest that can count them (docs/security.md says
why, websockets<18 in pyproject.toml pins the version it was checked against, and the
ping-flood tests fail if a new version changes it). Everything else is asyncio's:
the connection is an :class:`asyncio.Protocol` (``data_received``) over a transport,
around websockets' documented Sans-I/O ``protocol`` (``fail``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State as ConnectionState

__all__ = ["FEED_SLICE", "MAX_PINGS_PER_SECOND", "SEND_BUFFER_CAP", "GuardedClientConnection"]

#: Bytes fed to the WebSocket parser at a time, so that one large read is checked as it
#: goes rather than parsed whole first.
FEED_SLICE = 4096
#: A server pings every 20 s; this many in one second is a flood.
MAX_PINGS_PER_SECOND = 100
#: What may wait to be sent to the server (pongs, requests) before the client gives up.
SEND_BUFFER_CAP = 256 * 1024


class GuardedClientConnection(ClientConnection):
    """A client connection that gives up on a server flooding it.

    Attributes:
        failure: Why the client gave this connection up, or None.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failure: str | None = None
        self._pings: deque[float] = deque(maxlen=MAX_PINGS_PER_SECOND)
        # Built in connect()'s event loop: its clock times the pings.
        self._clock = asyncio.get_running_loop().time

    def data_received(self, data: bytes) -> None:
        for start in range(0, len(data), FEED_SLICE):
            if self.failure is not None or self.transport.is_closing():
                return
            super().data_received(data[start : start + FEED_SLICE])
            queued = self.transport.get_write_buffer_size()
            if queued > SEND_BUFFER_CAP:
                self._give_up(f"the server sent more than it read ({queued} bytes unsent)")
                self.transport.abort()
                return

    def process_event(self, event: Any) -> None:
        # Private in websockets: the only place that sees each frame received, pings
        # included. Their pongs are already queued (websockets answers while parsing);
        # what is counted here is how fast they come.
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            now = self._clock()
            pings = self._pings
            if len(pings) == pings.maxlen and now - pings[0] < 1.0:
                self._give_up("the server sent pings without end")
                if self.protocol.state is ConnectionState.OPEN:
                    # Sans-I/O: the parser drops whatever follows. Its close frame is
                    # not written: the transport is aborted at once, which drops what
                    # it holds anyway, and a server that floods does not read.
                    self.protocol.fail(CloseCode.POLICY_VIOLATION, "too many pings")
                self.transport.abort()
                return
            pings.append(now)
        super().process_event(event)

    def _give_up(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
