"""Where the app stands, without a screen: the connection, what may be sent now and the
words when not, and whether a reconnect lost the running calculation."""

from __future__ import annotations

import dataclasses

import pytest

from progress_client.events import ConnectionStatus
from progress_protocol.messages import ErrorCode
from progress_protocol.states import Attribution, Run, State, StateSnapshot
from progress_tui.status import ERROR_TITLES, ConnectionInfo, lost_on_resync, refusal

T0 = 1_700_000_000.0
STEP = 2.0
ALICE = Attribution("a11ce", "alice@laptop")
URL = "ws://127.0.0.1:3003/progress"


def snap(
    state: State,
    changed_at: float,
    *,
    calculation_id: str | None = "c1",
    seq: int = 1,
    started_at: float | None = T0,
) -> StateSnapshot:
    return StateSnapshot(state, calculation_id, seq, changed_at, STEP, started_at, None, None)


def run_of(calculation_id: str = "c1") -> Run:
    return Run(calculation_id, T0, T0 + 3 * STEP, State.SUCCESS, None, ALICE, None)


def test_connection_info_is_plain_data() -> None:
    """Equal by value and frozen: a reactive sees a change only when a fact changed."""
    info = ConnectionInfo(ConnectionStatus.RECONNECTING, URL, 2, 5.0, "refused")
    assert info == ConnectionInfo(ConnectionStatus.RECONNECTING, URL, 2, 5.0, "refused")
    assert (info.attempt, info.stopped) == (2, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.attempt = 3  # type: ignore[misc]


def test_connected_only_while_connected() -> None:
    """Only CONNECTED counts: connecting, reconnecting or stopped, nothing can be sent."""
    assert ConnectionInfo(ConnectionStatus.CONNECTED, URL).connected
    for status in ConnectionStatus:
        if status is not ConnectionStatus.CONNECTED:
            assert not ConnectionInfo(status, URL).connected


def test_nothing_is_sent_while_not_connected() -> None:
    """Not connected: "yet" while the client tries; once it stopped, how to try again."""
    trying = ConnectionInfo(ConnectionStatus.RECONNECTING, URL, 2)
    assert refusal("start", trying, expects_running=False) == (
        "Not connected",
        "Cannot start yet: not connected to the server.",
    )
    stopped = ConnectionInfo(ConnectionStatus.DISCONNECTED, URL, error="no", stopped=True)
    assert refusal("cancel", stopped, expects_running=True) == (
        "Not connected",
        "Cannot cancel: not connected. Press r to try again.",
    )


def test_start_while_running_and_cancel_while_not_are_refused_here() -> None:
    """Connected, what the server would refuse is refused before sending, in its words;
    the other action is sent."""
    connected = ConnectionInfo(ConnectionStatus.CONNECTED, URL)
    assert refusal("start", connected, expects_running=True) == (
        "Already running",
        "A calculation is already running: cancel it with c, or wait for it to end.",
    )
    assert refusal("cancel", connected, expects_running=True) is None
    assert refusal("cancel", connected, expects_running=False) == (
        "Not running",
        "There is no running calculation to cancel.",
    )
    assert refusal("start", connected, expects_running=False) is None


def test_every_error_code_over_websocket_has_a_title() -> None:
    """Each code a WebSocket reply can carry is titled for people; the HTTP-only ones
    (the status line says those) read "Refused" if ever one comes."""
    http_only = {
        ErrorCode.NOT_FOUND,
        ErrorCode.METHOD_NOT_ALLOWED,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.FORBIDDEN_HOST,
        ErrorCode.FORBIDDEN_ORIGIN,
        ErrorCode.REQUEST_TOO_LARGE,
        ErrorCode.SERVER_FULL,
        ErrorCode.SHUTTING_DOWN,
    }
    assert set(ERROR_TITLES) == set(ErrorCode) - http_only


def test_a_calculation_is_lost_when_the_server_restarted() -> None:
    """Running before the loss; after it the server is IDLE, or its seq went back, or the
    calculation is in neither the state nor the history: lost. Finished meanwhile: not."""
    before = snap(State.IN_PROGRESS, T0 + STEP, calculation_id="5d77c0ffee", seq=7)
    idle = snap(State.IDLE, T0 + 9, calculation_id=None, seq=0, started_at=None)
    other = snap(State.STARTING, T0 + 9, calculation_id="other", seq=9)
    assert lost_on_resync(before, idle) is True
    assert lost_on_resync(before, snap(State.STARTING, T0 + 9, calculation_id="o", seq=1))
    assert lost_on_resync(before, other) is None  # only the history can tell
    assert lost_on_resync(before, other, [run_of("5d77c0ffee")]) is False
    assert lost_on_resync(before, other, [run_of("older")]) is True
    done = snap(State.SUCCESS, T0 + 9, calculation_id="5d77c0ffee", seq=9)
    assert lost_on_resync(before, done) is False
    idle_before = snap(State.SUCCESS, T0, calculation_id="5d77c0ffee", seq=7)
    assert lost_on_resync(idle_before, idle) is False  # nothing was running
