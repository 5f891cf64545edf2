"""The floor: the same frames, encoded once, written to plain sockets. No WebSocket library.

It does the least any server must: a handshake, then one transport.write() per client
per state, with the frame bytes built once. Nothing can fan out for less in Python.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct

from .common import Calculation, arguments, hello

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(text: str) -> bytes:
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes([0x81, size]) + payload
    if size < 65536:
        return bytes([0x81, 126]) + struct.pack("!H", size) + payload
    return bytes([0x81, 127]) + struct.pack("!Q", size) + payload


class Client(asyncio.Protocol):
    def __init__(self, server: FloorServer) -> None:
        self.server = server
        self.buffer = b""
        self.open = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        if not self.open:
            if b"\r\n\r\n" not in self.buffer:
                return
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept
                + b"\r\n\r\n"
                + frame(hello())
                + frame(self.server.calculation.message())
            )
            self.open = True
            self.server.clients.add(self.transport)
        while len(self.buffer) >= 6:  # client frames: small, masked
            size = self.buffer[1] & 0x7F
            if len(self.buffer) < 6 + size or size >= 126:
                return
            mask, payload = self.buffer[2:6], self.buffer[6 : 6 + size]
            self.buffer = self.buffer[6 + size :]
            text = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if text.startswith(b"{") and json.loads(text).get("action") == "start":
                self.server.calculation.start()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.server.clients.discard(self.transport)


class FloorServer:
    def __init__(self, step_seconds: float) -> None:
        self.clients: set[asyncio.Transport] = set()
        self.calculation = Calculation(step_seconds, self.broadcast)

    def broadcast(self, message: str) -> None:
        data = frame(message)
        for transport in self.clients:
            transport.write(data)


async def main() -> None:
    options = arguments()
    server = FloorServer(options.step_seconds)
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: Client(server), "127.0.0.1", options.port, backlog=4096)
    print("ready", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    try:  # the floor gets the fastest loop there is, as progress-server does
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
