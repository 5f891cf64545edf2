"""Saves the pictures of the docs from a real server and real progress-tui apps.

Run with `make capture` (or `python docs/capture.py [DIR]`):

- ``three-panes.svg``: an animated SVG, README's first picture. Three terminals tiled
  side by side, alice's, bob's and ci-bot's, follow one calculation: alice starts it,
  it runs, bob cancels it; alice starts another and it ends. Each frame is the three
  apps' own SVG screenshots (Textual's), shown in turn by a CSS animation.
- ``tui-40x12.svg``: the TUI in a 40x12 pane, mid-run.
- ``tui-reconnecting.svg``: the TUI at 80x24 after its server went away mid-run: the
  stale state, the frozen clock, the countdown to the next attempt.

The server is real (on a free port, every change broadcast as always); only its clock
is moved by hand, so that each frame shows a state for as long as the picture needs.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from textual.pilot import Pilot

from progress_client.client import ProgressClient
from progress_client.reconnect import ReconnectPolicy
from progress_protocol.states import State
from progress_server.backends.memory import MemoryBackend
from progress_server.calculation import HandClock
from progress_server.server import ProgressServer
from progress_tui.app import ProgressApp
from progress_tui.widgets.connection_bar import ConnectionStatusBar

OUTPUT = Path(__file__).parent / "images"
#: Each pane, in cells; three side by side make one frame.
PANE = (44, 18)
#: Seconds each frame stays on screen; the last one longer.
FRAME_SECONDS = 1.6
LAST_FRAME_SECONDS = 3.0
#: Pixels between two panes.
GAP = 12
#: The largest the animation may be (README's first picture must load fast).
MAX_BYTES = 1_000_000
STEP = 2.0
NAMES = ("alice", "bob", "ci-bot")


async def settled(pilots: list[Pilot[None]], done: Callable[[ProgressApp], bool]) -> None:
    """Until every app shows what ``done`` asks for, painted."""
    async with asyncio.timeout(10):
        for pilot in pilots:
            app = pilot.app
            assert isinstance(app, ProgressApp)
            while not done(app):
                await pilot.pause(0.02)
        for pilot in pilots:
            await pilot.pause()
            await pilot.wait_for_scheduled_animations()
            await pilot.pause()


def state_is(state: State) -> Callable[[ProgressApp], bool]:
    return lambda app: app.snapshot is not None and app.snapshot.state is state


def app_for(url: str, name: str) -> ProgressApp:
    client = ProgressClient(url, name=name, agent="progress-tui")
    return ProgressApp(client, animate=False)


async def three_panes() -> list[list[str]]:
    """The frames: for each, the three apps' screenshots."""
    clock = HandClock(time.time())
    backend = MemoryBackend(step_seconds=STEP, clock=clock)
    frames: list[list[str]] = []
    async with ProgressServer(port=0, backend=backend) as server, AsyncExitStack() as stack:
        apps = [app_for(server.url, name) for name in NAMES]
        pilots = [await stack.enter_async_context(app.run_test(size=PANE)) for app in apps]

        async def shoot(done: Callable[[ProgressApp], bool]) -> None:
            await settled(pilots, done)
            frames.append(
                [
                    app.export_screenshot(title=f"{name}'s terminal", simplify=True)
                    for app, name in zip(apps, NAMES, strict=True)
                ]
            )

        def step() -> None:
            clock.advance(STEP)

        await shoot(
            lambda app: app.connected and app.presence is not None and app.presence.total == 3
        )
        await pilots[0].press("s")  # alice starts a run
        await shoot(state_is(State.STARTING))
        step()
        await backend.snapshot()
        await shoot(state_is(State.IN_PROGRESS))
        await pilots[1].press("c")  # bob cancels it
        await shoot(state_is(State.CANCELED))
        await pilots[0].press("s")  # alice starts another
        await shoot(state_is(State.STARTING))
        for state in (State.IN_PROGRESS, State.ALMOST_DONE, State.SUCCESS):
            step()
            await backend.snapshot()
            await shoot(state_is(state))
    return frames


def nested(svg: str, x: float, y: float) -> tuple[str, float, float]:
    """A screenshot as an element of a larger SVG at (x, y); its width and height."""
    svg = re.sub(r"^<\?xml[^>]*>\s*", "", svg.strip())
    match = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg)
    assert match is not None, "Textual's screenshot has no viewBox"
    width, height = float(match.group(1)), float(match.group(2))
    svg = svg.replace(
        "<svg ", f'<svg x="{x:g}" y="{y:g}" width="{width:g}" height="{height:g}" ', 1
    )
    return svg, width, height


def animation(frames: list[list[str]]) -> str:
    """One SVG that shows the frames in turn, for ever (CSS: no script, so it plays
    where SVG is shown as an image, as GitHub shows README's)."""
    durations = [FRAME_SECONDS] * (len(frames) - 1) + [LAST_FRAME_SECONDS]
    total = sum(durations)
    groups, styles = [], []
    width = height = 0.0
    start = 0.0
    for number, (panes, seconds) in enumerate(zip(frames, durations, strict=True)):
        x = 0.0
        parts = []
        for pane in panes:
            element, pane_width, pane_height = nested(pane, x, 0)
            parts.append(element)
            x += pane_width + GAP
            height = max(height, pane_height)
        width = max(width, x - GAP)
        begin, end = 100 * start / total, 100 * (start + seconds) / total
        start += seconds
        # Shown from `begin` to `end` percent of the loop, hidden otherwise.
        steps = [f"0% {{opacity: {1 if begin == 0 else 0}}}"]
        if begin > 0:
            steps.append(f"{begin:.3f}% {{opacity: 1}}")
        if end < 100:
            steps.append(f"{end:.3f}% {{opacity: 0}}")
        styles.append(f"@keyframes f{number} {{{' '.join(steps)}}}")
        styles.append(
            f".f{number} {{animation: f{number} {total:g}s step-end infinite; "
            f"opacity: {1 if number == 0 else 0}}}"
        )
        groups.append(f'<g class="f{number}">{"".join(parts)}</g>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:g} {height:g}" '
        f'width="{width:g}" height="{height:g}">'
        f"<style>{' '.join(styles)}</style>{''.join(groups)}</svg>\n"
    )


async def narrow_and_reconnecting(output: Path) -> None:
    """The TUI mid-run in a 40x12 pane; then at 80x24 with its server gone."""
    clock = HandClock(time.time())
    backend = MemoryBackend(step_seconds=STEP, clock=clock)
    server = ProgressServer(port=0, backend=backend)
    await server.start()
    client = ProgressClient(
        server.url, name="alice", agent="progress-tui", policy=ReconnectPolicy(initial=30, cap=30)
    )
    app = ProgressApp(client, animate=False)
    async with app.run_test(size=(40, 12)) as pilot:
        await settled([pilot], lambda app: app.connected and app.snapshot is not None)
        await pilot.press("s")
        clock.advance(STEP)
        await backend.snapshot()
        await settled([pilot], state_is(State.IN_PROGRESS))
        app.save_screenshot(filename="tui-40x12.svg", path=str(output))
        await pilot.resize_terminal(80, 24)
        await server.close()
        await settled(
            [pilot], lambda app: "Reconnecting in" in app.query_one(ConnectionStatusBar).describe()
        )
        app.save_screenshot(filename="tui-reconnecting.svg", path=str(output))


async def shoot_all(output: Path) -> list[list[str]]:
    frames = await three_panes()
    await narrow_and_reconnecting(output)
    return frames


def main(output: Path = OUTPUT) -> None:
    output.mkdir(parents=True, exist_ok=True)
    frames = asyncio.run(shoot_all(output))
    picture = animation(frames)
    size = len(picture.encode())
    if size > MAX_BYTES:
        raise SystemExit(f"three-panes.svg would be {size} bytes, over {MAX_BYTES}")
    (output / "three-panes.svg").write_text(picture)
    print(
        f"saved {output}/three-panes.svg ({len(frames)} frames, {size // 1024} KiB), "
        "tui-40x12.svg and tui-reconnecting.svg"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT)
