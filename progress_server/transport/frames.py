"""Whole, unmasked WebSocket frames, built here and written to the transports.

websockets' protocol frames the control frames (pongs, close frames); the server frames
its own messages, with websockets' public :class:`~websockets.frames.Frame`. With no
compression a frame is the same bytes for everyone, so the hub frames a state once for
all its clients and the keepalive a ping once for a slice of them; replies and the
hello are framed per client. They are written only to open connections and only whole,
as websockets' own writes are, so frames never interleave.

``Frame.serialize`` takes about 1.3 µs where the ``struct.pack`` this module used to do
took 0.2 µs (Python 3.11, a 2-core machine): the extra microsecond is paid once per
broadcast, once per keepalive slice, and once per reply or hello, never once per
recipient of a broadcast, so it stays far below what one handshake or one reply costs.
"""

from __future__ import annotations

from websockets.frames import Frame, Opcode

__all__ = ["ping_frame", "text_frame"]


def text_frame(text: str) -> bytes:
    """A text frame carrying ``text``.

    Raises:
        UnicodeEncodeError: If ``text`` holds a lone surrogate.
    """
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def ping_frame(payload: bytes) -> bytes:
    """A ping frame.

    Raises:
        websockets.exceptions.ProtocolError: If ``payload`` is over 125 bytes.
    """
    return Frame(Opcode.PING, payload).serialize(mask=False)
