"""A ProgressClient that tests control: its events are the ones a test plays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

from textual.pilot import Pilot

from progress_client.client import ClientEvent, Closed, ProgressClient

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
        while not self.queue.empty():
            await asyncio.sleep(0.001)
        await pilot.pause()  # until the app, which got them all, is idle
