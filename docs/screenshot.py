"""Saves docs/images/progress-tui.svg: progress-tui half-way through a real run.

Run with `make screenshot`. A real server on a free port, a real app, one run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from progress_protocol.states import State
from progress_server.server import ProgressServer
from progress_tui.app import ProgressApp

OUTPUT = Path(__file__).parent / "images" / "progress-tui.svg"


async def main() -> None:
    async with ProgressServer(port=0, step_seconds=2.0) as server:
        app = ProgressApp(server.url, animate=False)
        async with app.run_test(size=(100, 30)) as pilot:
            while not (app.connected and app.run_view):
                await pilot.pause(0.05)
            await pilot.press("s")
            while not (app.run_view and app.run_view.state is State.IN_PROGRESS):
                await pilot.pause(0.05)
            await pilot.pause(1.0)
            app.save_screenshot(filename=OUTPUT.name, path=str(OUTPUT.parent))
    print(f"saved {OUTPUT}")


if __name__ == "__main__":
    asyncio.run(main())
