"""A TCP proxy for the tests, in front of a real server (Redis): it forwards every byte,
and on request delays, holds, stalls or black-holes what passes, the way a slow or
broken network does. It runs in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from urllib.parse import urlsplit

from tests.helpers import TIMEOUT

#: Bytes a link keeps of what its client sent, for rules that pick links by it.
KEPT = 64 * 1024


class Link:
    """One client connection and its connection upstream.

    Attributes:
        sent: The first KEPT bytes the client sent (its commands, for Redis).
        black: Nothing passes either way any more, and neither side is told.
        hold_until: Loop time before which nothing goes back to the client.
    """

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.sent = bytearray()
        self.black = False
        self.hold_until = 0.0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.proxy.upstream)
        except OSError:
            writer.close()
            return
        self._writers.append(up_writer)
        await asyncio.gather(
            self._pump(reader, up_writer, upward=True),
            self._pump(up_reader, writer, upward=False),
            return_exceptions=True,
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upward: bool
    ) -> None:
        """Read as it comes; write each chunk once its latency has passed, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def write() -> None:
            while (item := await queue.get()) is not None:
                arrived, data = item
                await asyncio.sleep(max(0.0, arrived + self.proxy.latency - loop.time()))
                await self.proxy.flowing.wait()
                if not upward:
                    while (held := self.hold_until - loop.time()) > 0:
                        await asyncio.sleep(held)
                if self.black:
                    continue
                writer.write(data)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
            if not self.black:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()

        writing = asyncio.create_task(write())
        self._tasks.append(writing)
        try:
            while data := await reader.read(65536):
                if upward:
                    if len(self.sent) < KEPT:
                        self.sent += data[: KEPT - len(self.sent)]
                    self.proxy.inspect(self, data)
                queue.put_nowait((loop.time(), data))
        except ConnectionError:
            pass
        finally:
            queue.put_nowait(None)
            await writing

    def abort(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()


class Proxy:
    """Listens on a free port of 127.0.0.1 and forwards to ``upstream``.

    Args:
        upstream: The port of the real server.

    Attributes:
        latency: Seconds each chunk takes to pass, each way.
        flowing: Cleared by :meth:`stall`: every byte waits, connections are accepted.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0  # a free one, once started
        self.latency = 0.0
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.links: list[Link] = []
        self._server: asyncio.Server | None = None
        self._holds: list[tuple[tuple[bytes, ...], float, asyncio.Event]] = []
        self._accepting: set[asyncio.Task[None]] = set()

    @classmethod
    def before(cls, url: str) -> Proxy:
        """A proxy to the server of a ``redis://host:port/db`` URL (not yet started)."""
        port = urlsplit(url).port
        assert port is not None, url
        return cls(port)

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.flowing.set()
        for link in self.links:
            link.abort()
        # Not cancelled: asyncio logs a cancelled connection callback as an error. Their
        # links are cut, so they end at once.
        if self._accepting:
            _, late = await asyncio.wait(self._accepting, timeout=TIMEOUT)
            for task in late:
                task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> Proxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = Link(self)
        self.links.append(link)
        task = asyncio.current_task()
        assert task is not None
        self._accepting.add(task)
        try:
            await link.run(reader, writer)
        finally:
            self._accepting.discard(task)

    # What a test asks for.

    def stall(self) -> None:
        """Nothing passes, either way, on any connection, until :meth:`resume`: a
        server that accepts and does not answer."""
        self.flowing.clear()

    def resume(self) -> None:
        """Everything waiting passes; held replies too."""
        for link in self.links:
            link.hold_until = 0.0
        self.flowing.set()

    def blackhole(self, which: Callable[[Link], bool]) -> list[Link]:
        """The links ``which`` picks pass nothing any more, and close nothing: a path
        that died in silence (no RST, no FIN)."""
        chosen = [link for link in self.links if which(link)]
        for link in chosen:
            link.black = True
        return chosen

    def hold_reply(self, commands: tuple[bytes, ...], seconds: float) -> asyncio.Event:
        """Once: the next connection whose client sends one of ``commands`` gets nothing
        back for ``seconds`` from then on (the command itself reaches the server at
        once). Returns an event set when it happened."""
        happened = asyncio.Event()
        self._holds.append((commands, seconds, happened))
        return happened

    def inspect(self, link: Link, data: bytes) -> None:
        for hold in list(self._holds):
            commands, seconds, happened = hold
            if any(command in data for command in commands):
                self._holds.remove(hold)
                link.hold_until = asyncio.get_running_loop().time() + seconds
                happened.set()
