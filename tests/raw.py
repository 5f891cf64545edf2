"""A raw TCP WebSocket client for the tests that need to misbehave on purpose."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

from tests.helpers import TIMEOUT

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)


class RawClient:
    """A socket that did a WebSocket handshake and then reads only when told to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    async def connect(
        cls, port: int, *, path: str = "/progress", receive_buffer: int | None = None
    ) -> RawClient:
        sock = socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, HANDSHAKE.format(path=path, port=port).encode())
        client = cls(sock)
        response = await client._read_until(b"\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 101"), response
        return client

    async def _fill(self) -> None:
        chunk = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recv(self.sock, 65536), TIMEOUT
        )
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buffer += chunk

    async def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            await self._fill()
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    async def _read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server (never masked): its opcode and payload."""
        first, second = await self._read_exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._read_exact(8))
        return first & 0x0F, await self._read_exact(length)

    async def message(self) -> dict[str, Any]:
        """The next text message, decoded; control frames are skipped."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x1:
                return json.loads(payload)  # type: ignore[no-any-return]
            if opcode == 0x8:
                raise EOFError("close frame")

    def close(self) -> None:
        self.sock.close()


async def open_socket(port: int) -> socket.socket:
    """A non-blocking TCP socket connected to the server."""
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def send_then_reset(port: int, data: bytes) -> None:
    """Send ``data`` on a new connection and reset it at once (SO_LINGER 0: an RST, not
    a FIN), as a peer that crashed or gave up right after its request."""
    sock = await open_socket(port)
    await asyncio.get_running_loop().sock_sendall(sock, data)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (an RST ends it too)."""
    loop = asyncio.get_running_loop()
    received = b""
    async with asyncio.timeout(TIMEOUT):
        try:
            while chunk := await loop.sock_recv(sock, 65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received
