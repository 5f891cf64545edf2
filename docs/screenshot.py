"""Saves docs/images/progress-tui.svg: alice's progress-tui, a run of bob's under way.

Run with `make screenshot`. A real server on a free port, alice's real app at 120x36,
and bob's real client beside it: alice runs a calculation to SUCCESS, starts another
that bob cancels, then bob starts a third; the picture shows that one starting, who
did what, and the history.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from textual.pilot import Pilot

from progress_client.client import ProgressClient
from progress_client.events import Connected
from progress_protocol.states import State
from progress_server.server import ProgressServer
from progress_tui.app import ProgressApp
from progress_tui.widgets.calculation_view import CalculationView

OUTPUT = Path(__file__).parent / "images" / "progress-tui.svg"


async def until(pilot: Pilot[None], done: object) -> None:
    while not done():  # type: ignore[operator]
        await pilot.pause(0.05)


async def main() -> None:
    async with ProgressServer(port=0, step_seconds=2.0) as server:
        bob = ProgressClient(server.url, name="bob@desk")
        bob_connected = asyncio.Event()

        async def follow() -> None:
            async with contextlib.aclosing(bob.events()) as events:
                async for event in events:
                    if isinstance(event, Connected):
                        bob_connected.set()

        bob_task = asyncio.create_task(follow())
        await bob_connected.wait()
        app = ProgressApp(ProgressClient(server.url, name="alice@laptop"), animate=False)
        async with app.run_test(size=(120, 36)) as pilot:

            def state() -> State | None:
                return app.snapshot.state if app.snapshot else None

            await until(pilot, lambda: app.connected and app.snapshot is not None)
            await pilot.press("s")
            await until(pilot, lambda: state() is State.SUCCESS)
            await pilot.press("s")
            await until(pilot, lambda: state() is State.IN_PROGRESS)
            await pilot.pause(0.7)
            await bob.send("cancel")
            await until(pilot, lambda: state() is State.CANCELED and len(app.history) == 2)
            await pilot.pause(1.0)
            await bob.send("start")
            await until(pilot, lambda: state() is State.STARTING)
            await pilot.pause(1.2)
            app.query_one(CalculationView).tick()  # (frozen spinners: no ticker either)
            await pilot.pause()
            app.save_screenshot(filename=OUTPUT.name, path=str(OUTPUT.parent))
        await bob.close()
        await bob_task
    print(f"saved {OUTPUT}")


if __name__ == "__main__":
    asyncio.run(main())
