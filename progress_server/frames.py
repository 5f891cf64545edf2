"""Whole, unmasked WebSocket frames, built here and written to the transports.

websockets' protocol frames the control frames (pongs, close frames); the server frames
its own messages. With no compression a frame is the same bytes for everyone, so the
hub frames a state once for all its clients and the keepalive a ping once for a slice
of them; replies and the hello are framed per client. They are written only to open
connections and only whole, as websockets' own writes are, so frames never interleave.
"""

from __future__ import annotations

import struct

__all__ = ["ping_frame", "text_frame"]


def text_frame(text: str) -> bytes:
    """A text frame carrying ``text``.

    Raises:
        UnicodeEncodeError: If ``text`` holds a lone surrogate.
    """
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def ping_frame(payload: bytes) -> bytes:
    """A ping frame, at most 125 bytes of data."""
    if len(payload) > 125:
        raise ValueError("a ping carries at most 125 bytes")
    return struct.pack("!BB", 0x89, len(payload)) + payload
