"""A ProgressClient that tests control (its events are the ones a test plays), and what
the app tests look at the screen with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Sequence

from textual.app import App
from textual.pilot import Pilot
from textual.widget import Widget

from progress_client.client import ProgressClient
from progress_client.events import (
    ClientEvent,
    ClientsChanged,
    Closed,
    Connected,
    Connecting,
    HistoryReceived,
    StateReceived,
)
from progress_protocol.states import State, StateSnapshot
from progress_tui.app import ProgressApp
from tests.helpers import TIMEOUT

URL = "ws://127.0.0.1:3003/progress"


class ScriptedClient(ProgressClient):
    """Yields what :meth:`play` is given, in order, until closed; sends nothing.

    Everything else is the real client's (the URL check, the name, ``send`` refusing
    while no connection is open), so the app cannot tell it from one.
    """

    def __init__(
        self, *events: ClientEvent, url: str | Sequence[str] = URL, name: str = "alice@laptop"
    ) -> None:
        super().__init__(url, name=name)
        self.queue: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self.yielded = 0
        self.iterations = 0
        self.play(*events)

    def play(self, *events: ClientEvent) -> None:
        for event in events:
            self.queue.put_nowait(event)

    async def events(self) -> AsyncGenerator[ClientEvent, None]:
        self.iterations += 1
        while True:
            event = await self.queue.get()
            self.yielded += 1
            yield event
            if isinstance(event, Closed):
                return

    async def close(self) -> None:
        await super().close()
        self.play(Closed("closed"))

    async def played(self, pilot: Pilot[None]) -> None:
        """Until the app has applied every event played so far."""
        assert isinstance(pilot.app, ProgressApp)
        mailbox = pilot.app.mailbox
        # Taken from the queue, then from the app's mailbox (at most at the screen's
        # refresh rate: maybe after a timer).
        while not self.queue.empty() or mailbox:
            await asyncio.sleep(0.001)
        await pilot.pause()  # until the app, which got them all, is idle


def connected_client() -> ScriptedClient:
    """A client that has just connected to an idle server (for tests of the UI alone)."""
    return ScriptedClient(
        Connecting(URL, 1),
        Connected(URL, "progress-server/9.8.7", "c0ffee"),
        StateReceived(StateSnapshot(State.IDLE, None, 0, time.time(), 2.0)),
        HistoryReceived(()),
        ClientsChanged(1),
    )


async def until(
    pilot: Pilot[None],
    predicate: Callable[[], bool],
    timeout: float = TIMEOUT,
    what: str | Callable[[], str] = "",
) -> None:
    """Let the app run until `predicate` holds; fails the test after `timeout`, saying
    `what` was awaited (a callable: what it says then, e.g. what the app has instead).

    For a fact that stays once true (a state that lasts until the test moves on, a
    connection, a line in the log), never for one that may come and go meanwhile.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"{said or 'still not true'}: not after {timeout:g} s")
        await pilot.pause(0.01)


async def eventually(
    pilot: Pilot[None], check: Callable[[], object], timeout: float = TIMEOUT
) -> None:
    """Let the app run until ``check`` (which asserts) passes; after ``timeout``, its
    failure is the test's.

    For what is drawn after a key, a resize or a notification: the layout that follows
    takes a frame or two (a widget redraws for its new size on the Resize the layout
    sends it), more on a busy machine, and ``pilot.pause()`` waits for the first only.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        await pilot.pause(0.01)


def rendered(app: App[None], widget: Widget | str, within: str | None = None) -> str:
    """The characters a widget shows on screen now, line by line, as the compositor
    draws them (a test-only look at Textual's compositor); ``within`` crops it to
    another widget's region."""
    if isinstance(widget, str):
        widget = app.query_one(widget)
    region = widget.region
    if within is not None:
        region = region.intersection(app.query_one(within).region)
    strips = app.screen._compositor.render_strips()
    lines = strips[region.y : region.bottom]
    return "\n".join(strip.crop(region.x, region.right).text.rstrip() for strip in lines)
