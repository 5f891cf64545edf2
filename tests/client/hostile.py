"""A hostile server for the clients' tests: a real WebSocket server playing scripted frames.

Each connection gets the script's hello, then its frames, raw, in order; then each
request is answered with the script's replies for its action, if any. Handshakes can
be refused first, each with a scripted HTTP response (:class:`Refusal`). The frames are
JSON text built here, so that they can carry what no honest server sends: a 400-digit
integer, 1e300, escapes of control characters and lone surrogates. CASES holds one
script per kind of hostility, with what a client must make of it.

:class:`FloodServer` is another kind: every message valid, but more of them a second
than any screen can draw.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from progress_client.events import MAX_INVALID_MESSAGES
from tests.helpers import TIMEOUT

__all__ = [
    "CASES",
    "COMBINED_CASES",
    "FLOOD_LAST",
    "HUGE",
    "REQUEST_ID",
    "Case",
    "ErrorFloodServer",
    "FloodServer",
    "HostileServer",
    "Refusal",
    "Script",
    "ack",
    "frame",
    "hello",
    "history",
    "invalid",
    "state",
]

#: An integer of 400 digits: float() of it raises OverflowError.
HUGE = int("9" * 400)
#: In a reply, stands for the request's id (a JSON string, or null).
REQUEST_ID = "__REQUEST_ID__"


def frame(**fields: Any) -> str:
    """One message as JSON text; json.dumps escapes control characters and surrogates."""
    return json.dumps(fields)


def hello(**fields: Any) -> str:
    return frame(
        **{"type": "hello", "protocol": 1, "server": "hostile/1", "client_id": "c1"} | fields
    )


def state(state: str = "IDLE", seq: int = 1, **fields: Any) -> str:
    payload = {
        "type": "state",
        "state": state,
        "calculation_id": None,
        "seq": seq,
        "changed_at": 1_700_000_000.0,
        "step_seconds": 2.0,
    }
    return frame(**payload | fields)


def ack(action: str, calculation_id: str) -> str:
    """An ack of the request it answers: the server puts in the request's id."""
    return frame(type="ack", action=action, calculation_id=calculation_id, request_id=REQUEST_ID)


def history(*runs: dict[str, Any]) -> str:
    return frame(type="history", runs=list(runs))


def run(calculation_id: str, started_by: str, canceled_by: str | None = None) -> dict[str, Any]:
    """One finished run: a SUCCESS, or a CANCELED during IN_PROGRESS if canceled_by."""
    return {
        "calculation_id": calculation_id,
        "started_at": 1_700_000_000.0,
        "ended_at": 1_700_000_006.0,
        "outcome": "CANCELED" if canceled_by else "SUCCESS",
        "canceled_during": "IN_PROGRESS" if canceled_by else None,
        "started_by": {"client_id": "c1", "name": started_by},
        "canceled_by": {"client_id": "c2", "name": canceled_by} if canceled_by else None,
    }


def invalid(*frames: str) -> tuple[str, ...]:
    """Enough of ``frames``, in turn, for a client to give the connection up."""
    return tuple(frames[i % len(frames)] for i in range(MAX_INVALID_MESSAGES))


@dataclass(frozen=True)
class Script:
    """What the hostile server says on each connection.

    Attributes:
        frames: Sent after hello, at once.
        replies: For each action, the frames that answer it.
        hello: The first frame.
    """

    frames: Sequence[str] = ()
    replies: Mapping[str, Sequence[str]] = field(default_factory=dict)
    hello: str = field(default_factory=hello)


@dataclass(frozen=True)
class Refusal:
    """An HTTP response that refuses a handshake.

    Attributes:
        status: Its status code.
        body: Its body, raw (JSON or not).
        headers: Extra headers, e.g. ``Retry-After``.
        reason: Its status line's reason phrase.
    """

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    reason: str = "Refused"

    @classmethod
    def error(cls, status: int, message: str, **headers: str) -> Refusal:
        """A refusal the way progress-server words it: its JSON error object."""
        body = frame(type="error", code="refused", message=message, request_id=None)
        return cls(status, body.encode(), {"Content-Type": "application/json", **headers})

    def response(self) -> Response:
        headers = Headers(self.headers)
        headers["Content-Length"] = str(len(self.body))
        headers["Connection"] = "close"
        return Response(self.status, self.reason, headers, self.body)


class HostileServer:
    """A WebSocket server on a free port that plays a :class:`Script` to each client.

    Given several scripts, it plays them in turn, one per connection. Given refusals,
    it first refuses as many handshakes, each with the next one.

    Attributes:
        connections: How many clients connected so far.
        close_codes: The close code of each connection that ended, in order.
        handshakes: How many handshakes were asked for, refused ones included.
    """

    def __init__(self, *scripts: Script, refusals: Sequence[Refusal] = ()) -> None:
        self.scripts = scripts or (Script(),)
        self.refusals = refusals
        self.handshakes = 0
        self.connections = 0
        self.close_codes: list[int | None] = []
        self._server: Server | None = None
        self._closed = asyncio.Condition()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/progress"

    def _refuse(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if self.handshakes <= len(self.refusals):
            return self.refusals[self.handshakes - 1].response()
        return None

    async def _play(self, connection: ServerConnection) -> None:
        script = self.scripts[self.connections % len(self.scripts)]
        self.connections += 1
        try:
            await connection.send(script.hello)
            for text in script.frames:
                await connection.send(text)
            async for request in connection:
                try:
                    payload = json.loads(request)
                    replies = script.replies.get(payload["action"], ())
                    request_id = json.dumps(payload.get("request_id"))
                except (ValueError, KeyError, TypeError):
                    continue
                for text in replies:
                    await connection.send(text.replace(f'"{REQUEST_ID}"', request_id))
        except ConnectionClosed:
            pass
        finally:
            async with self._closed:
                self.close_codes.append(connection.close_code)
                self._closed.notify_all()

    async def closed(self, count: int = 1) -> list[int | None]:
        """The close codes once ``count`` connections ended."""
        async with asyncio.timeout(TIMEOUT), self._closed:
            await self._closed.wait_for(lambda: len(self.close_codes) >= count)
        return self.close_codes

    async def __aenter__(self) -> HostileServer:
        self._server = await serve(self._play, "127.0.0.1", 0, process_request=self._refuse)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.wait_for(self._server.wait_closed(), TIMEOUT)


@dataclass(frozen=True)
class Case:
    """A script, and what a client must make of it.

    Attributes:
        invalid: The client must give the connection up as broken.
        valid_first: The server sends a valid state before anything invalid.
        last_state: The state the script's frames end on, if valid.
        shown: Texts that must be shown literally; hidden: texts never shown.
    """

    script: Script
    invalid: bool = False
    valid_first: bool = False
    last_state: str | None = None
    shown: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()


def _markup(calculation_id: str) -> Case:
    """A well-formed run whose id is markup: every client must show it as it is."""
    return Case(
        Script(
            frames=(
                state("IDLE", 1, calculation_id=calculation_id),
                state("SUCCESS", 2, calculation_id=calculation_id),
            ),
            replies={
                "start": (
                    ack("start", calculation_id),
                    *(
                        state(name, seq, calculation_id=calculation_id)
                        for seq, name in enumerate(
                            ("STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"), start=10
                        )
                    ),
                ),
                "cancel": (
                    ack("cancel", calculation_id),
                    state("CANCELED", 10, calculation_id=calculation_id),
                ),
                "history": (
                    # A name with an escape: skipped; then one with markup: shown as it is.
                    history(run("r1", "\x1b[2J\x1b[31mowned")),
                    history(run(calculation_id, calculation_id, calculation_id)),
                ),
            },
        ),
        last_state="SUCCESS",
        shown=(calculation_id,),
    )


#: Answers to the actions after the hostile part, so that every command can end.
_RUN: dict[str, tuple[str, ...]] = {
    "start": (
        ack("start", "run1"),
        state("STARTING", 100, calculation_id="run1"),
        state("SUCCESS", 101, calculation_id="run1"),
    ),
    "cancel": (ack("cancel", "run1"), state("CANCELED", 100, calculation_id="run1")),
}

CASES: dict[str, Case] = {
    "changed_at of 400 digits": Case(Script(invalid(state(changed_at=HUGE))), invalid=True),
    "changed_at of 1e300": Case(Script(invalid(state(changed_at=1e300))), invalid=True),
    "changed_at of -1e18": Case(Script(invalid(state(changed_at=-1e18))), invalid=True),
    "step_seconds of 0": Case(Script(invalid(state(step_seconds=0))), invalid=True),
    "ESC and CR in strings": Case(
        Script(
            invalid(
                state(calculation_id="\x1b[2J\x1b[31mowned"),
                frame(type="error", code="x", message="fine\rFAKE LINE", request_id=None),
                state(calculation_id="a\x1b]0;title\x07"),
                state(calculation_id="\ud800"),
            ),
        ),
        invalid=True,
        hidden=("owned", "FAKE LINE", "title"),
    ),
    "ESC in the hello": Case(
        Script(invalid(hello(server="evil\x1b[2J")), hello=hello(server="evil\x1b[2J")),
        invalid=True,
    ),
    "calculation_id [/]": _markup("[/]"),
    "calculation_id [@click=app.quit]X[/]": _markup("[@click=app.quit]X[/]"),
    "a lower seq": Case(
        Script(
            (
                state("IDLE", 5, calculation_id="first"),
                state("SUCCESS", 3, calculation_id="older"),  # lower: dropped
                state("STARTING", 5, calculation_id="same"),  # equal seq, other content
                state("IDLE", 5, calculation_id="first"),  # a repeat: harmless
                state("CANCELED", 6, calculation_id="last"),
            ),
            replies=_RUN,
        ),
        last_state="CANCELED",
        shown=("first", "last"),
        hidden=("older", "same"),
    ),
    "unknown message types": Case(
        Script(
            (
                *[frame(type="weather", states=[]) for _ in range(2 * MAX_INVALID_MESSAGES)],
                state("IDLE", 1),
                frame(type="weather", sunny=True),
                state("CANCELED", 2, calculation_id="last"),
            ),
            replies=_RUN,
        ),
        last_state="CANCELED",
        shown=("last",),
    ),
    "invalid after a valid state": Case(
        Script((state("IDLE", 1, calculation_id="before"), *invalid(state(step_seconds=-1)))),
        invalid=True,
        valid_first=True,
        shown=("before",),
    ),
}


#: Every hostile value of CASES in three scripts, for the tests that pay for each case
#: with processes: broken from the start, hostile but usable, broken after a state.
COMBINED_CASES: dict[str, Case] = {
    "invalid from the start": Case(
        Script(
            (
                state(changed_at=HUGE),
                state(changed_at=1e300),
                state(changed_at=-1e18),
                state(step_seconds=0),
            ),
            hello=hello(server="evil\x1b[2J"),
        ),
        invalid=True,
    ),
    "hostile but usable": Case(
        Script(
            (
                *[frame(type="weather", states=[]) for _ in range(2 * MAX_INVALID_MESSAGES)],
                state("IDLE", 5, calculation_id="[/]"),
                # Fewer invalid messages than the client gives up at: each one skipped.
                state("IDLE", 6, calculation_id="\x1b[2J\x1b[31mowned"),
                frame(type="error", code="x", message="fine\rFAKE LINE", request_id=None),
                state("IDLE", 6, calculation_id="\ud800"),
                state("SUCCESS", 3, calculation_id="older"),
                state("STARTING", 5, calculation_id="same"),
                state("SUCCESS", 6, calculation_id="[@click=app.quit]X[/]"),
            ),
            replies=_markup("[@click=app.quit]X[/]").script.replies,
        ),
        last_state="SUCCESS",
        shown=("[/]", "[@click=app.quit]X[/]"),
        hidden=("owned", "FAKE LINE", "older", "same"),
    ),
    "invalid after a valid state": CASES["invalid after a valid state"],
}


#: The calculation id of the state a :class:`FloodServer` ends its flood on.
FLOOD_LAST = "the-last-one"

#: States a flood sends ahead of what the client has read (its pongs say how far).
FLOOD_AHEAD = 2000

#: The states of one run, in order: a flood goes through them, a new run each time.
_RUN_STATES = ("STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS")


class FloodServer:
    """A WebSocket server sending valid states as fast as it can, until :meth:`stop`.

    It runs in a thread with its own event loop, as a real server runs beside its
    client rather than taking turns in the client's loop. Each connection gets hello,
    then runs of STARTING, IN_PROGRESS, ALMOST_DONE and SUCCESS (a new calculation
    each, seq 1, 2, 3...) while the flood lasts; once stopped, one last state (SUCCESS
    of :data:`FLOOD_LAST`), and then nothing: the connection stays open until the
    client closes it.

    Attributes:
        sent: The states sent so far, on every connection (read from any thread).
    """

    def __init__(self) -> None:
        self.sent = 0
        self._flooding = threading.Event()
        self._flooding.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._ends: list[asyncio.Future[int]] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        port = int(self._server.sockets[0].getsockname()[1])
        return f"ws://127.0.0.1:{port}/progress"

    async def _flood(self, connection: ServerConnection) -> None:
        """Hello, states as fast as the connection takes them, then the last one."""
        try:
            await connection.send(hello())
            seq = 0
            # What the client has read is known by its pongs: at most FLOOD_AHEAD states
            # are on their way, so that the flood goes at the client's pace and the
            # last state is not behind megabytes in the system's buffers.
            read: Awaitable[float] | None = None
            while self._flooding.is_set():
                if seq % (FLOOD_AHEAD // 2) == 0:
                    if read is not None:
                        await read
                    read = await connection.ping()
                seq += 1
                run, step = divmod(seq - 1, len(_RUN_STATES))
                calculation_id = f"run{run:09d}"
                await connection.send(
                    state(
                        _RUN_STATES[step],
                        seq,
                        calculation_id=calculation_id,
                        started_at=1_700_000_000.0,
                    )
                )
                self.sent += 1
                if seq % 64 == 0:
                    # send() waits only while the socket is full: let the loop read
                    # the client's frames (pongs, its close) now and then.
                    await asyncio.sleep(0)
            seq += 1
            await connection.send(state("SUCCESS", seq, calculation_id=FLOOD_LAST))
            self._ended(seq)
            await connection.wait_closed()
        except ConnectionClosed:
            pass

    def _ended(self, seq: int) -> None:
        for end in self._ends:
            end.get_loop().call_soon_threadsafe(end.set_result, seq)
        self._ends.clear()

    async def stop(self) -> int:
        """End the flood; returns the seq of the last state, once it is sent to the
        client connected."""
        end: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._ends.append, end)
        self._loop.call_soon_threadsafe(self._flooding.clear)
        async with asyncio.timeout(TIMEOUT):
            return await end

    def _run(self) -> None:
        async def serve_until_closed() -> None:
            self._loop = asyncio.get_running_loop()
            async with serve(self._flood, "127.0.0.1", 0) as server:
                self._server = server
                self._ready.set()
                await server.wait_closed()

        asyncio.run(serve_until_closed())

    async def __aenter__(self) -> FloodServer:
        self._thread = threading.Thread(target=self._run, name="flood-server", daemon=True)
        self._thread.start()
        if not await asyncio.to_thread(self._ready.wait, TIMEOUT):
            raise RuntimeError("the flood server did not start")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._loop is not None and self._server is not None and self._thread is not None
        self._flooding.clear()
        self._loop.call_soon_threadsafe(self._server.close)
        await asyncio.to_thread(self._thread.join, TIMEOUT)


class ErrorFloodServer(FloodServer):
    """A server sending ``error`` messages nobody asked for (each with its own sentence),
    as fast as TCP takes them, without pacing, and reading nothing its client sends
    (pongs, a close frame): the buffers fill with megabytes, and a close is never
    answered."""

    async def _flood(self, connection: ServerConnection) -> None:
        try:
            connection.transport.pause_reading()
            await connection.send(hello())
            await connection.send(state("IDLE", 1))
            while self._flooding.is_set():
                self.sent += 1
                await connection.send(
                    json.dumps(
                        {
                            "type": "error",
                            "code": "not_running",
                            "message": f"Refusal number {self.sent}, asked by nobody.",
                            "request_id": None,
                        }
                    )
                )
                if self.sent % 64 == 0:
                    await asyncio.sleep(0)
        except ConnectionClosed:
            pass
