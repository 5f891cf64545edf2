"""How progress-tui looks at every size: SVG snapshots with frozen clocks and spinners.

The app is given a client that plays the events a real connection would bring (the
Pilot tests cover the real thing). Six sizes, from a tiled 40x12 pane to 250x70, in
five states; at every one the state's name, the progress and the connection status
show whole. And in every kind of terminal (truecolor, 256 colours, 16, NO_COLOR), as
that terminal shows it, every character readable. After a deliberate change of the
look: `make test ARGS="tests/tui/test_snapshots.py --snapshot-update"`, then look at
them.
"""

from __future__ import annotations

import pytest
from pytest_textual_snapshot import SVGImageExtension
from syrupy.assertion import SnapshotAssertion
from textual.pilot import Pilot

from progress_client.events import (
    ClientEvent,
    ClientsChanged,
    Connected,
    Connecting,
    ConnectionLost,
    HistoryReceived,
    PresenceChanged,
    StateReceived,
    Waiting,
)
from progress_protocol.messages import Person, Presence
from progress_protocol.states import Attribution, Run, State, StateSnapshot
from progress_tui.app import ProgressApp
from tests.tui.looks import TERMINALS, XTERM, low_contrast, svg, terminal
from tests.tui.scripted import URL, ScriptedClient

# Times on screen are local time: the same everywhere (tests/tui/conftest.py).
pytestmark = pytest.mark.usefixtures("utc")

T0 = 1_795_716_000.0  # wall clock when the run starts
LOOP_NOW = 500.0  # the event loop's clock
STEP = 2.0
ALICE = Attribution("a11ce", "alice@laptop")
BOB = Attribution("b0b", "bob@desk")
ID = "3b6188a98e7a"


def snapshot(state: State, seq: int, changed_at: float, **fields: object) -> StateSnapshot:
    if state is State.IDLE:
        return StateSnapshot(state, None, seq, changed_at, STEP)
    return StateSnapshot(state, ID, seq, changed_at, STEP, started_at=T0, **fields)  # type: ignore[arg-type]


EARLIER = (
    Run("7e7e00112233", T0 - 300, T0 - 296.8, State.CANCELED, State.IN_PROGRESS, ALICE, BOB),
    Run("5d77aa00bb11", T0 - 600, T0 - 594, State.SUCCESS, None, BOB, None),
)
#: Who is here: alice (this app) on two terminals, bob, and a robot watching.
PRESENCE = Presence(
    (
        Person("alice@laptop", "operator", ("ctl", "tui"), 2),
        Person("bob@desk", "operator", ("tui",), 1),
        Person("grafana", "viewer", ("browser",), 1),
    ),
    total=3,
    connections=4,
)
AS_ALICE = Connected(
    URL, "progress-server/0.1.0", "c0ffee", "alice@laptop", "operator", ("start", "cancel")
)
IDLE: list[ClientEvent] = [
    Connecting(URL, 1),
    AS_ALICE,
    StateReceived(snapshot(State.IDLE, 0, T0 - 900)),
    HistoryReceived(()),
    PresenceChanged(PRESENCE),
    ClientsChanged(4),
]
RUNNING: list[ClientEvent] = [
    Connecting(URL, 1),
    AS_ALICE,
    StateReceived(snapshot(State.STARTING, 5, T0, by=ALICE)),
    HistoryReceived(EARLIER),
    PresenceChanged(PRESENCE),
    ClientsChanged(4),
    StateReceived(snapshot(State.IN_PROGRESS, 6, T0 + STEP)),
]
#: grafana's screen: a viewer, during alice's run; Start and Cancel are dimmed.
VIEWER: list[ClientEvent] = [
    Connecting(URL, 1),
    Connected(URL, "progress-server/0.1.0", "9a7a", "grafana", "viewer", ()),
    *RUNNING[2:],
]
CANCELED: list[ClientEvent] = [
    *RUNNING,
    StateReceived(snapshot(State.CANCELED, 7, T0 + 3.2, canceled_during=State.IN_PROGRESS, by=BOB)),
    HistoryReceived(
        (Run(ID, T0, T0 + 3.2, State.CANCELED, State.IN_PROGRESS, ALICE, BOB), *EARLIER)
    ),
]
RECONNECTING: list[ClientEvent] = [
    *RUNNING,
    ConnectionLost(URL, "the server is going away (1001)", 1001),
    Waiting(URL, 0.4, LOOP_NOW - 1.0, 1, "the server is going away (1001)"),
    Connecting(URL, 2),
    Waiting(URL, 2.5, LOOP_NOW + 2.5, 2, "connection refused"),
]
STATES = {
    "idle": IDLE,
    "running": RUNNING,
    "canceled": CANCELED,
    "reconnecting": RECONNECTING,
    "viewer": VIEWER,
}
SIZES = [(40, 12), (60, 20), (80, 24), (120, 36), (200, 60), (250, 70)]


async def settle(pilot: Pilot[None]) -> None:
    """Until the app has laid itself out and painted (what ``snap_compare`` waits for)."""
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


@pytest.mark.parametrize("state", list(STATES))
async def test_layout(snapshot: SnapshotAssertion, state: str) -> None:
    """One snapshot per size, the app resized from one to the next, then back to two of
    them: the picture is the same on the way back (resizing restores everything).

    idle: nothing started yet. running: half-way through, 3.0 s of 6.0 s. canceled: by
    bob 3.2 s in, during IN_PROGRESS. reconnecting: the server left mid-run, the last
    state stale, the clock stopped at the loss, the countdown in the bar. viewer: the
    running calculation as a viewer sees it, Start and Cancel dimmed. Each (but
    reconnecting) says who the app is and who is watching.
    """
    client = ScriptedClient(*STATES[state])
    app = ProgressApp(client, clock=lambda: T0 + 3.0, now=lambda: LOOP_NOW, animate=False)
    shots: dict[tuple[int, int], str] = {}
    async with app.run_test(size=SIZES[0]) as pilot:
        await client.played(pilot)
        for size in [*SIZES, (40, 12), (80, 24)]:  # there, and back from 250x70
            await pilot.resize_terminal(*size)
            await settle(pilot)
            shot = app.export_screenshot(title=app.title, simplify=True)
            assert shots.setdefault(size, shot) == shot, f"{size} differs after resizing"
    svg = snapshot.use_extension(SVGImageExtension)
    for (width, height), shot in shots.items():
        assert svg(name=f"{width}x{height}") == shot


#: The sizes and states each kind of terminal is seen in.
COLOUR_SIZES = [(40, 12), (80, 24), (120, 36), (250, 70)]
#: Every state in the terminal's own colours (16, or none), where the app draws
#: differently; in 256 colours and truecolor, those test_layout does not already show
#: in them (a viewer's screen is there in truecolor).
COLOUR_CASES = [
    *[
        (kind, state)
        for kind in ("16", "no-color")
        for state in ("running", "canceled", "viewer", "reconnecting")
    ],
    ("256", "running"),
    ("256", "canceled"),
    ("256", "viewer"),
    ("truecolor", "running"),
    ("truecolor", "reconnecting"),
]


@pytest.mark.parametrize(("kind", "state"), COLOUR_CASES, ids=[f"{k}-{s}" for k, s in COLOUR_CASES])
async def test_colours(snapshot: SnapshotAssertion, kind: str, state: str) -> None:
    """The screen as each kind of terminal shows it (truecolor, 256 colours, 16 colours,
    NO_COLOR), at four sizes, and every character on it readable: text at 4.5:1 at
    least against its background, lines and shapes (borders, the bar, the spinner) at
    3:1 (WCAG 2's AA), in the app's palette and in xterm's. Inactive keys and buttons,
    dimmed on purpose, are exempt (WCAG does not ask it of them; see
    tests/tui/looks.py)."""
    with terminal(TERMINALS[kind]):
        client = ScriptedClient(*STATES[state])
        app = ProgressApp(client, clock=lambda: T0 + 3.0, now=lambda: LOOP_NOW, animate=False)
    shots: dict[tuple[int, int], str] = {}
    async with app.run_test(size=COLOUR_SIZES[0]) as pilot:
        await client.played(pilot)
        for width, height in COLOUR_SIZES:
            await pilot.resize_terminal(width, height)
            await settle(pilot)
            title = f"{app.title} ({kind})"
            shots[width, height] = svg(app, TERMINALS[kind], title=title, palette=app.ansi_theme)
            for palette in (app.ansi_theme, XTERM):
                low = low_contrast(app, TERMINALS[kind], palette)
                assert not low, f"{width}x{height}, {len(low)} hard to read:\n" + "\n".join(
                    low[:12]
                )
    svg_snapshot = snapshot.use_extension(SVGImageExtension)
    for (width, height), shot in shots.items():
        assert svg_snapshot(name=f"{width}x{height}") == shot
