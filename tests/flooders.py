"""Hostile peers in a process of their own, so that the server is measured, not the test.

    python -m tests.flooders pings PORT CONNECTIONS SECONDS [--read]
    python -m tests.flooders handshakes PORT CONNECTIONS SECONDS

``pings``: each connection does a real WebSocket handshake, then sends masked pings
as fast as the socket takes them; with ``--read`` it also reads (and discards) what
comes back, else it never reads. A connection the server closes is replaced at once.

``handshakes``: each connection sends an endless request (a request line and 8 KiB
header lines, 128 at most, websockets' own limits) and never finishes it, then holds
the socket open.

Both print one JSON line at the end: what the server did to the connections.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
import time

HANDSHAKE = (
    "GET /progress HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)


def masked_ping(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x89, 0x80 | len(payload)) + mask + masked


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, key: str) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1


def open_websocket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(HANDSHAKE.format(port=port).encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        response += chunk
    if not response.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(response.split(b"\r\n", 1)[0].decode(errors="replace"))
    return sock


def ping_flood(port: int, until: float, read: bool, tally: Tally) -> None:
    burst = masked_ping(b"x" * 125) * 512  # 64 KiB of pings per write
    while time.monotonic() < until:
        try:
            sock = open_websocket(port)
        except OSError as exc:
            tally.add(f"refused: {exc}")
            time.sleep(0.05)
            continue
        tally.add("connections")
        reader = None
        if read:
            reader = threading.Thread(target=drain, args=(sock, tally), daemon=True)
            reader.start()
        try:
            sock.settimeout(0.5)
            while time.monotonic() < until:
                try:
                    sock.sendall(burst)
                except TimeoutError:
                    continue  # the server stopped reading for a moment
        except OSError:
            tally.add("cut")
        finally:
            sock.close()
        if reader is not None:
            reader.join(1)


def drain(sock: socket.socket, tally: Tally) -> None:
    """Read everything; note a close frame with code 1008."""
    seen = b""
    try:
        while chunk := sock.recv(65536):
            # A close frame from a server is 0x88, length, then the code.
            seen = (seen + chunk)[-4096:]
            if b"\x88" in seen and struct.pack("!H", 1008) in seen:
                tally.add("closed 1008")
                return
    except OSError:
        pass


def handshake_flood(port: int, connections: int, until: float, tally: Tally) -> None:
    held = []
    line = "X-Padding: " + "a" * (8 * 1024 - 14) + "\r\n"
    for _ in range(connections):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError as exc:
            tally.add(f"refused: {exc}")
            continue
        sock.setblocking(False)
        held.append([sock, 0])
        start = f"GET /progress HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        sock.send(start.encode())
    while time.monotonic() < until:
        progressed = False
        for entry in held:
            sock, sent = entry
            if sent >= 126 or sock.fileno() < 0:
                continue
            try:
                sock.send(line.encode())
                entry[1] += 1
                progressed = True
            except BlockingIOError:
                pass
            except OSError:
                tally.add("cut")
                entry[1] = 1000
        if not progressed:
            time.sleep(0.01)
    for sock, sent in held:
        tally.add("held" if sent < 1000 else "gone")
        sock.close()


def main(argv: list[str]) -> None:
    kind, port, connections, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    until = time.monotonic() + seconds
    tally = Tally()
    if kind == "pings":
        threads = [
            threading.Thread(target=ping_flood, args=(port, until, "--read" in argv, tally))
            for _ in range(connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        handshake_flood(port, connections, until, tally)
    print(json.dumps(tally.counts), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
