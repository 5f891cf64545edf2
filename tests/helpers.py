"""What the tests share: time units, a hand-moved clock, and real-client helpers."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from progress_protocol.states import Attribution, StateSnapshot
from progress_server.backends.memory import MemoryBackend
from progress_server.calculation import HandClock as FakeClock
from progress_server.server import ProgressServer

# Every duration in the tests derives from these, so a slow machine can scale them:
# PROGRESS_TEST_TIME_FACTOR=3 make test
TIME_FACTOR = float(
    os.environ.get("PROGRESS_TEST_TIME_FACTOR", "2" if os.environ.get("CI") else "1")
)
#: A calculation step short enough to keep the suite fast, long enough to act within.
STEP = 0.05 * TIME_FACTOR
#: How long to await an event that should come promptly before the test fails.
TIMEOUT = 5.0 * TIME_FACTOR


class HeldBackend(MemoryBackend):
    """The in-memory backend, whose starts wait until :attr:`release` is set: an action
    held in flight (a slow store) for as long as a test needs. What happened, in order,
    is in :attr:`events`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release = asyncio.Event()
        self.events: list[str] = []

    async def start_calculation(self, by: Attribution | None = None) -> StateSnapshot:
        self.events.append("start begins")
        await self.release.wait()
        snapshot = await super().start_calculation(by)
        self.events.append("start done")
        return snapshot

    async def aclose(self) -> None:
        self.events.append("backend closed")
        await super().aclose()


class SteppedServer(ProgressServer):
    """A real server on a free port whose calculation moves only when the test says so:
    its clock is a :class:`FakeClock`, so a state lasts until :meth:`step`, however
    busy the machine. For tests of what is seen in a state, not of timing.

    Args:
        overrides: :class:`ServerConfig` fields, as for :class:`ProgressServer`.
    """

    #: The step as clients are told it (the elapsed and left they show).
    STEP = 60.0

    def __init__(self, **overrides: Any) -> None:
        self.clock = FakeClock(time.time())
        backend = MemoryBackend(step_seconds=self.STEP, clock=self.clock)
        super().__init__(port=overrides.pop("port", 0), backend=backend, **overrides)

    async def step(self, steps: int = 1) -> None:
        """Move the calculation on by ``steps`` steps, now (each change is broadcast)."""
        for _ in range(steps):
            self.clock.advance(self.STEP)
            await self.backend.snapshot()  # catches up with the clock: the transition


#: Where :func:`free_port` picks ports: below Linux's ephemeral range (32768-60999), from
#: which the kernel takes the port of every socket bound to port 0 and of every outgoing
#: connection, so that none of those takes a port between the moment it is picked and
#: the moment a server binds it. Each xdist worker has a window of its own, and each
#: process starts at a random place in its window (another test run may share the machine).
PORTS_START, PORTS_END = 20_000, 32_000
PORTS_WINDOW = 1_000


def _ports() -> Iterator[int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    windows = (PORTS_END - PORTS_START) // PORTS_WINDOW
    first = PORTS_START + (int(worker) % windows if worker.isdigit() else 0) * PORTS_WINDOW
    offset = random.randrange(PORTS_WINDOW)
    while True:
        for index in range(PORTS_WINDOW):
            yield first + (offset + index) % PORTS_WINDOW


_PORTS = _ports()


def free_port() -> int:
    """A port nothing listens on, for a server that must be told its port before it
    starts (or restarts on it): never one the kernel hands out for port 0."""
    for _ in range(PORTS_WINDOW):
        port = next(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {PORTS_START} to {PORTS_END}")


async def recv_json(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next message, decoded; fails the test if none comes in time."""
    message = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(message, str), "the server sent a binary frame"
    payload = json.loads(message)
    assert isinstance(payload, dict)
    return payload


async def recv_type(ws: ClientConnection, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next message of one type, skipping others (e.g. `clients` counts)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await recv_json(ws)
            if message["type"] == kind:
                return message


async def states_until(
    ws: ClientConnection, final: str, timeout: float = TIMEOUT
) -> list[dict[str, Any]]:
    """Every state message up to and including the first in state `final`."""
    states = []
    async with asyncio.timeout(timeout):
        while True:
            message = await recv_type(ws, "state")
            states.append(message)
            if message["state"] == final:
                return states


async def no_message_of_type(ws: ClientConnection, kind: str, seconds: float) -> None:
    """Fails if a message of that type arrives within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await recv_json(ws, timeout=seconds)
                assert message["type"] != kind, f"unexpected {kind} message: {message}"
    except TimeoutError:
        pass


async def join(url: str) -> tuple[ClientConnection, dict[str, Any], dict[str, Any]]:
    """Connect a real client; returns it with its hello and first state."""
    ws = await connect(url, open_timeout=TIMEOUT)
    hello = await recv_json(ws)
    assert hello["type"] == "hello"
    state = await recv_json(ws)
    assert state["type"] == "state"
    return ws, hello, state


async def send_json(ws: ClientConnection, payload: dict[str, Any]) -> None:
    await ws.send(json.dumps(payload))


class Watcher:
    """A real client that reads every message as it comes and keeps them all, so that a
    test awaits the message it needs (:meth:`until`) however short the state it carries
    lasted: every message is looked at, not only the last one.

    Attributes:
        messages: Every message received, decoded, in order.
        arrived: The wall-clock time each one arrived (``changed_at`` is wall time too).
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self._more = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, url: str) -> Watcher:
        """A new client of ``url``; its hello and first state are in :attr:`messages`."""
        return cls(await connect(url, open_timeout=TIMEOUT))

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.messages.append(json.loads(raw))
                self.arrived.append(time.time())
                self._more.set()
        except ConnectionClosed:
            pass  # what came before is kept; close_code says how it ended
        finally:
            self._more.set()  # wakes an until() that waits on a closed connection

    @property
    def states(self) -> list[dict[str, Any]]:
        return [message for message in self.messages if message["type"] == "state"]

    @property
    def counts(self) -> list[int]:
        """The clients counts received, in order."""
        return [message["count"] for message in self.messages if message["type"] == "clients"]

    async def until(
        self,
        kind: str | tuple[str, ...],
        *,
        after: int = 0,
        timeout: float = TIMEOUT,
        **fields: Any,
    ) -> dict[str, Any]:
        """The first message of ``kind`` (or of one of the kinds) whose ``fields`` have
        these values, among those from index ``after`` on, waiting for it if need be.

        Raises:
            AssertionError: If none comes within ``timeout``, or the connection ends;
                the message lists what came.
        """
        kinds = (kind,) if isinstance(kind, str) else kind
        checked = after
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for message in self.messages[checked:]:
                        if message["type"] in kinds and all(
                            message.get(name) == value for name, value in fields.items()
                        ):
                            return message
                    checked = max(checked, len(self.messages))
                    if self.task.done():
                        break
                    self._more.clear()
                    await self._more.wait()
        except TimeoutError:
            pass
        got = [_brief(message) for message in self.messages[after:]]
        raise AssertionError(
            f"no {'/'.join(kinds)} message with {fields} within {timeout:g} s"
            f"{' (the connection ended)' if self.task.done() else ''}; got: {got}"
        )

    async def close(self) -> None:
        await self.ws.close()
        await self.task


def _brief(message: dict[str, Any]) -> str:
    """A message in a few words, for a failure's explanation."""
    if message["type"] == "state":
        return f"{message['state']} seq {message['seq']}"
    if message["type"] == "clients":
        return f"clients {message['count']}"
    return str(message.get("code") or message["type"])


async def http_request(
    port: int,
    method: str,
    path: str,
    *,
    host: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """A real HTTP request; returns the status, the headers and the decoded JSON body.

    ``headers`` may set Host, to play a browser that reached the server by another name.
    """

    def request() -> tuple[int, dict[str, str], Any]:
        connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            content = response.read()
            received = {name.lower(): value for name, value in response.getheaders()}
        finally:
            connection.close()
        is_json = received.get("content-type") == "application/json" and content != b""
        return response.status, received, json.loads(content) if is_json else content

    return await asyncio.to_thread(request)


def command(name: str) -> str:
    """The path of one of the installed console commands, beside this Python."""
    return str(Path(sys.executable).parent / name)


class ServerProcess:
    """A real `progress-server` process on a free port; its log is kept in `lines`.

    Args:
        args: Its command-line options.
        env: Environment variables to add.
        wrapper: A command that runs it, e.g. ``("prlimit", "--nofile=128:128")``.
    """

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, wrapper: tuple[str, ...] = ()
    ) -> None:
        self.args = ["--port", "0", *args] if "--port" not in args else list(args)
        self.wrapper = wrapper
        self.env = {**os.environ, **(env or {})}
        self.lines: list[str] = []
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/progress"

    async def start(self) -> ServerProcess:
        self.process = await asyncio.create_subprocess_exec(
            *self.wrapper,
            command("progress-server"),
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        listening = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(listening))
        self.port = await asyncio.wait_for(listening, TIMEOUT)
        return self

    async def _read(self, listening: asyncio.Future[int]) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            match = re.search(r"listening on wss?://[^:]+:(\d+)/", line)
            if match and not listening.done():
                listening.set_result(int(match.group(1)))
        if not listening.done():
            listening.set_exception(RuntimeError("server exited:\n" + "\n".join(self.lines)))

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, timeout: float = TIMEOUT) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.wait()

    async def __aenter__(self) -> ServerProcess:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
