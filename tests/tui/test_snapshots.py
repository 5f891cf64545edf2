"""How progress-tui looks: SVG snapshots with frozen clocks and a frozen spinner.

The app starts no connection here; the test feeds it the client events a real
connection would bring (the Pilot tests cover the real thing). After a deliberate
change of the look: `make test ARGS="tests/tui/test_snapshots.py --snapshot-update"`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from textual.pilot import Pilot

from progress_client.client import (
    ClientEvent,
    ClientsChanged,
    Connected,
    Connecting,
    ConnectionLost,
    StateReceived,
    Waiting,
)
from progress_protocol.states import State, StateSnapshot
from progress_tui.app import ProgressApp

URL = "ws://127.0.0.1:3003/progress"
T0 = 1_795_716_000.0  # wall clock when the run starts
LOOP_NOW = 500.0  # the event loop's clock
SIZE = (100, 30)
STEP = 2.0


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Timestamps in the log are local time: make it the same everywhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "UTC")
        time.tzset()
        yield
    time.tzset()


def snapshot(
    state: State, seq: int, changed_at: float, calculation_id: str | None = "3b6188a98e7a"
) -> StateSnapshot:
    return StateSnapshot(state, calculation_id, seq, changed_at, STEP)


CONNECTED: list[ClientEvent] = [
    Connecting(URL, 1),
    Connected(URL, "progress-server/0.1.0", "c0ffee"),
    StateReceived(snapshot(State.IDLE, 0, T0 - 60, calculation_id=None)),
    ClientsChanged(3),
]
RUNNING: list[ClientEvent] = [
    *CONNECTED,
    StateReceived(snapshot(State.STARTING, 1, T0)),
    StateReceived(snapshot(State.IN_PROGRESS, 2, T0 + STEP)),
]


def app_at(now: float) -> ProgressApp:
    return ProgressApp(URL, connect=False, clock=lambda: now, now=lambda: LOOP_NOW, animate=False)


def feeding(events: list[ClientEvent]):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, ProgressApp)
        for event in events:
            app.apply(event)
        await pilot.pause()

    return run_before


def test_connected_idle(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """Connected, nothing started yet: Start enabled, Cancel dimmed."""
    assert snap_compare(app_at(T0), run_before=feeding(CONNECTED), terminal_size=SIZE)


def test_running(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """Half-way through the run: big IN PROGRESS, bar at 50 %, steps, elapsed 3.0 s."""
    assert snap_compare(app_at(T0 + 3.0), run_before=feeding(RUNNING), terminal_size=SIZE)


def test_reconnecting(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """Server gone: the last state dimmed and stale, the countdown and attempt in the bar."""
    events: list[ClientEvent] = [
        *RUNNING,
        ConnectionLost("the server is going away (1001)", 1001),
        Waiting(0.4, LOOP_NOW - 1.0, 1, "the server is going away (1001)"),
        Connecting(URL, 2),
        Waiting(2.5, LOOP_NOW + 2.5, 2, "connection refused"),
    ]
    assert snap_compare(app_at(T0 + 3.4), run_before=feeding(events), terminal_size=SIZE)
