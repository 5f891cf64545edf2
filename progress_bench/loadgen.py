"""The load generator: raw asyncio protocols in worker processes.

A client does the WebSocket handshake, then only appends ``(time, bytes)`` for every
chunk it receives; frames are parsed after the run. So receiving costs the load
generator next to nothing while the server is being measured, and the time stamped
is the time the bytes arrived.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import multiprocessing.connection
import struct
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

__all__ = [
    "Delivery",
    "ProcessGroup",
    "Workers",
    "deal",
    "pongs_for",
    "run_worker",
    "shares",
    "source_of",
]

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n{extra}\r\n"
)


def pongs_for(data: bytes) -> tuple[bytes, bytes]:
    """The pongs that answer the pings among the frames in ``data``, as a client must
    (servers drop clients that never answer their keepalive pings), and what is left
    of ``data`` after its last whole frame (put it before the next chunk).

    ``data`` starts at a frame's first byte: what a server sent after its handshake's
    response.
    """
    pongs = []
    offset, end = 0, len(data)
    while end - offset >= 2:
        first, size = data[offset], data[offset + 1] & 0x7F
        header = 2
        if size == 126:
            if end - offset < 4:
                break
            size, header = int.from_bytes(data[offset + 2 : offset + 4], "big"), 4
        elif size == 127:
            if end - offset < 10:
                break
            size, header = int.from_bytes(data[offset + 2 : offset + 10], "big"), 10
        if end - offset < header + size:
            break
        if first & 0x0F == 0x9:  # a ping: masked with a zero key, the payload unchanged
            payload = data[offset + header : offset + header + size]
            pongs.append(bytes((0x8A, 0x80 | size)) + b"\0\0\0\0" + payload)
        offset += header + size
    return b"".join(pongs), data[offset:]


async def _caught_up(loop: asyncio.AbstractEventLoop, *, tick: float = 0.1) -> None:
    """Until this process has read what the kernel holds for it: a busy load generator
    is behind, and what it has not read yet arrived all the same. Its loop is caught up
    when short sleeps come back on time, three in a row (30 s at most)."""
    on_time = 0
    for _ in range(300):
        began = loop.time()
        await asyncio.sleep(tick)
        on_time = on_time + 1 if loop.time() - began < 1.5 * tick else 0
        if on_time == 3:
            return


#: Tries to open one connection, at most.
ATTEMPTS = 3


def _same(client: BenchClient) -> BenchClient:
    return client


class BenchClient(asyncio.Protocol):
    __slots__ = ("chunks", "connected", "partial", "request", "transport", "upgraded")

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.chunks: list[tuple[float, bytes]] = []
        self.upgraded = False
        self.partial = b""  # a frame cut short at the end of the last chunk
        self.connected: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.chunks.append((time.time(), data))
        if not self.upgraded:
            received = b"".join(chunk for _, chunk in self.chunks)
            end = received.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded = True
            if not received.startswith(b"HTTP/1.1 101"):  # refused: a failed connection
                status = received.partition(b"\r\n")[0].decode(errors="replace")
                self.connected.set_exception(ConnectionError(status))
                return
            self.connected.set_result(time.monotonic())
            # A busy client may read the response and a ping in one chunk.
            data = received[end + 4 :]
        assert self.transport is not None
        pongs, self.partial = pongs_for(self.partial + data if self.partial else data)
        if pongs:
            self.transport.write(pongs)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("closed before the handshake"))


def frames(chunks: list[tuple[float, bytes]], *, upgraded: bool) -> list[tuple[float, bytes]]:
    """The text frames in what one client received, each with the time it completed.

    ``upgraded`` says whether the handshake's response was already cut off the chunks.
    """
    buffer = b""
    found: list[tuple[float, bytes]] = []
    for stamp, data in chunks:
        buffer += data
        if not upgraded:
            if b"\r\n\r\n" not in buffer:
                continue
            buffer = buffer.split(b"\r\n\r\n", 1)[1]
            upgraded = True
        while len(buffer) >= 2:
            size = buffer[1] & 0x7F
            offset = 2
            if size == 126:
                if len(buffer) < 4:
                    break
                (size,) = struct.unpack("!H", buffer[2:4])
                offset = 4
            elif size == 127:
                if len(buffer) < 10:
                    break
                (size,) = struct.unpack("!Q", buffer[2:10])
                offset = 10
            if len(buffer) < offset + size:
                break
            if buffer[0] & 0x0F == 0x1:
                found.append((stamp, buffer[offset : offset + size]))
            buffer = buffer[offset + size :]
    return found


@dataclass
class Delivery:
    """How a worker's connections went."""

    connected: int = 0
    failed: int = 0
    retried: int = 0
    first_attempt: float = 0.0
    last_connected: float = 0.0


async def _work(
    pipe: multiprocessing.connection.Connection,
    host: str,
    ports: list[int],
    path: str,
    concurrency: int,
    extra_headers: str,
    source: str | None = None,
) -> None:
    """One worker: a client for each port in ``ports``, from the address ``source``
    (one address offers its own range of ephemeral ports)."""
    loop = asyncio.get_running_loop()
    requests = {
        port: HANDSHAKE.format(path=path, host=host, port=port, extra=extra_headers).encode()
        for port in set(ports)
    }
    clients: list[BenchClient] = []
    gate = asyncio.Semaphore(concurrency)
    delivery = Delivery()
    reset = False

    async def open_one(port: int) -> None:
        # A handshake the server gave up on (it allows 5 s; a loaded machine can take
        # longer) is tried again, as a real client would, ATTEMPTS times at most.
        for _ in range(ATTEMPTS):
            async with gate:
                client = BenchClient(requests[port])
                try:
                    await loop.create_connection(
                        partial(_same, client),
                        host,
                        port,
                        local_addr=(source, 0) if source else None,
                    )
                    delivery.last_connected = max(
                        delivery.last_connected, await asyncio.wait_for(client.connected, 30)
                    )
                except (OSError, TimeoutError, ConnectionError):
                    delivery.retried += 1
                    if client.transport is not None:
                        client.transport.abort()
                    continue
                clients.append(client)
                delivery.connected += 1
                return
        delivery.failed += 1

    while True:
        # Wait for orders in a thread: the event loop must keep receiving meanwhile.
        command, argument = await asyncio.to_thread(pipe.recv)
        if command == "connect":
            delivery.first_attempt = time.monotonic()
            await asyncio.gather(*(open_one(port) for port in ports))
            pipe.send(
                (
                    delivery.connected,
                    delivery.failed,
                    delivery.first_attempt,
                    delivery.last_connected,
                )
            )
        elif command == "collect":
            await _caught_up(loop)
            measured: set[int] = set(argument)
            latencies: list[float] = []
            per_seq: dict[int, int] = {}
            for client in clients:
                for stamp, payload in frames(client.chunks, upgraded=reset):
                    if b'"type":"state"' not in payload.replace(b" ", b""):
                        continue
                    message: dict[str, Any] = json.loads(payload)
                    seq = message["seq"]
                    if seq in measured:
                        latencies.append(stamp - message["changed_at"])
                        per_seq[seq] = per_seq.get(seq, 0) + 1
            pipe.send((latencies, per_seq))
        elif command == "reset":  # forget the handshakes and what came before measuring
            for client in clients:
                client.chunks.clear()
            reset = True
            pipe.send(None)
        elif command == "close":
            for client in clients:
                if client.transport is not None:
                    client.transport.abort()
            pipe.send(None)
            return


def _worker_main(pipe: multiprocessing.connection.Connection, *args: Any) -> None:
    run_worker(_work, pipe, *args)


def run_worker(
    work: Callable[..., Coroutine[Any, Any, None]],
    pipe: multiprocessing.connection.Connection,
    *args: Any,
) -> None:
    """A worker process's body: ``work(pipe, *args)`` on uvloop when it is installed
    (the load generator may use it freely: it is not what is measured)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(work(pipe, *args))
    else:
        uvloop.run(work(pipe, *args))


def source_of(sources: Sequence[str], index: int) -> str | None:
    """The address process ``index`` connects from: the sources in turn, or any."""
    return sources[index % len(sources)] if sources else None


def shares(clients: int, processes: int) -> list[int]:
    """How many clients each process gets: as many as the next, within one."""
    return [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]


def deal(clients: int, processes: int, ports: Sequence[int]) -> list[list[int]]:
    """The port of every client, by load-generating process.

    Each process gets as many clients as the next (within one), and the clients are
    dealt to the ports round robin, so each port gets its share too.
    """
    if not ports:
        raise ValueError("the clients need at least one port")
    dealt, first = [], 0
    for share in shares(clients, processes):
        dealt.append([ports[(first + i) % len(ports)] for i in range(share)])
        first += share
    return dealt


class ProcessGroup:
    """Worker processes, each driven through a pipe: a command goes to every one, and
    their answers come back in order.

    Args:
        target: The body of each process, called as ``target(pipe, *arguments)``; it
            must answer every command, and return after answering ``"close"``.
        arguments: One tuple of arguments per process.
    """

    def __init__(self, target: Callable[..., None], arguments: Sequence[tuple[Any, ...]]) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.processes: list[Any] = []
        for args in arguments:
            parent, child = context.Pipe()
            process = context.Process(target=target, args=(child, *args), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def all(self, command: str, argument: Any = None) -> list[Any]:
        for pipe in self.pipes:
            pipe.send((command, argument))
        return [pipe.recv() for pipe in self.pipes]

    def close(self) -> None:
        try:
            self.all("close")
        finally:
            for process in self.processes:
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()


class Workers:
    """``processes`` load-generating processes sharing ``clients`` connections.

    The clients are dealt to ``ports`` round robin, so each port gets its share
    (within one) whatever the number of processes. With ``sources``, the processes
    connect from those addresses in turn (127.0.0.2, 127.0.0.3...): each address has
    its own ~28,000 ephemeral ports, the limit of clients from one address to one port.
    """

    def __init__(
        self,
        processes: int,
        host: str,
        ports: Sequence[int],
        path: str,
        clients: int,
        *,
        concurrency: int = 256,
        extra_headers: str = "",
        sources: Sequence[str] = (),
    ) -> None:
        self.group = ProcessGroup(
            _worker_main,
            [
                (
                    host,
                    share,
                    path,
                    concurrency,
                    extra_headers,
                    source_of(sources, index),
                )
                for index, share in enumerate(deal(clients, processes, ports))
            ],
        )

    def connect(self) -> tuple[int, int, float]:
        """Open every connection; returns (connected, failed, seconds it took)."""
        results = self.group.all("connect")
        connected = sum(r[0] for r in results)
        failed = sum(r[1] for r in results)
        started = min(r[2] for r in results)
        finished = max((r[3] for r in results if r[3]), default=started)
        return connected, failed, finished - started

    def reset(self) -> None:
        self.group.all("reset")

    def collect(self, seqs: list[int]) -> tuple[list[float], dict[int, int]]:
        latencies: list[float] = []
        per_seq: dict[int, int] = {}
        for worker_latencies, worker_per_seq in self.group.all("collect", seqs):
            latencies.extend(worker_latencies)
            for seq, count in worker_per_seq.items():
                per_seq[seq] = per_seq.get(seq, 0) + count
        return latencies, per_seq

    def close(self) -> None:
        self.group.close()
