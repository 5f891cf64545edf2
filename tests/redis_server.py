"""A private redis-server for the tests: a real one, on a free port, no persistence."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import TIMEOUT, free_port

REDIS_SERVER = shutil.which("redis-server")
MISSING = "the tests need redis-server: `make test` installs it (apt-get install redis-server)"


class RedisServer:
    """``redis-server`` as a child process; :meth:`stop` and :meth:`start` again restart it
    on the same port, with its data (``keep_data``, a dump on stop) or without."""

    def __init__(self, *, port: int | None = None, keep_data: bool = False) -> None:
        self.port = port or free_port()
        self.keep_data = keep_data
        self.directory = Path(tempfile.mkdtemp(prefix="progress-redis-"))
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        assert REDIS_SERVER is not None, MISSING
        persistence = ["--save", "3600 1"] if self.keep_data else ["--save", ""]
        return [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "no",
            *persistence,
        ]

    async def start(self) -> RedisServer:
        self.process = await asyncio.create_subprocess_exec(
            *self.command(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(TIMEOUT):
            while True:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.write(b"PING\r\n")
                    if (await reader.readline()).startswith(b"+PONG"):
                        writer.close()
                        return self
                    writer.close()
                except OSError:
                    pass
                await asyncio.sleep(0.02)

    def pause(self) -> None:
        """SIGSTOP: it accepts connections (the kernel does) and answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: it answers everything that waited."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def stop(self, *, kill: bool = False) -> None:
        """Stop it: SIGTERM saves the data when ``keep_data``; SIGKILL loses it."""
        if self.process is not None and self.process.returncode is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            await asyncio.wait_for(self.process.wait(), TIMEOUT)
        self.process = None

    async def __aenter__(self) -> RedisServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(kill=True)
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """A redis-server for a whole test session, without an event loop; yields its URL."""
    server = RedisServer()
    process = subprocess.Popen(
        server.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)
        yield server.url
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(server.directory, ignore_errors=True)
