"""One connection's messages read into events, without sockets."""

from __future__ import annotations

import logging

import pytest

from progress_client.events import (
    MAX_INVALID_MESSAGES,
    ActionAccepted,
    ClientsChanged,
    Connected,
    HistoryReceived,
    ServerError,
    Session,
    StateReceived,
)
from progress_protocol.messages import Ack, Error
from progress_protocol.states import State, StateSnapshot
from tests.client.hostile import frame, hello, history, state

URL = "ws://127.0.0.1:1/progress"


def test_each_message_becomes_its_event() -> None:
    """hello, state, history, clients, ack and error: one event each, hello first."""
    session = Session(URL)
    assert not session.greeted
    assert session.receive(hello()) == Connected(URL, "hostile/1", "c1")
    assert session.greeted
    assert session.receive(state()) == StateReceived(
        StateSnapshot(State.IDLE, None, 1, 1_700_000_000.0, 2.0)
    )
    assert session.receive(history()) == HistoryReceived(())
    assert session.receive(frame(type="clients", count=3)) == ClientsChanged(3)
    ack = frame(type="ack", action="start", calculation_id="c0ffee", request_id="start-1")
    assert session.receive(ack) == ActionAccepted(Ack("start", "c0ffee", "start-1"))
    error = frame(type="error", code="not_running", message="No.", request_id="cancel-2")
    assert session.receive(error) == ServerError(Error("not_running", "No.", "cancel-2"))
    assert session.failure is None


def test_an_older_state_is_dropped_and_a_repeat_is_not() -> None:
    """A lower seq, or the same seq with other content, would show the past: dropped.
    The same state again (a status reply) is not."""
    session = Session(URL)
    assert session.receive(state("STARTING", 5, calculation_id="first")) is not None
    assert session.receive(state("STARTING", 5, calculation_id="first")) is not None
    assert session.receive(state("IDLE", 4)) is None
    assert session.receive(state("IN_PROGRESS", 5, calculation_id="first")) is None
    later = session.receive(state("CANCELED", 6, calculation_id="first"))
    assert isinstance(later, StateReceived) and later.snapshot.seq == 6
    assert session.failure is None  # dropped, never counted as invalid


def test_unknown_types_are_skipped_and_never_counted(caplog: pytest.LogCaptureFixture) -> None:
    """A newer server's messages: no event, no warning, however many."""
    session = Session(URL)
    with caplog.at_level(logging.DEBUG):
        for _ in range(MAX_INVALID_MESSAGES * 2):
            assert session.receive(frame(type="from_the_future", x=1)) is None
    assert session.failure is None
    assert caplog.records == []


def test_invalid_messages_are_skipped_then_the_connection_is_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each is logged in one line and skipped; the last one allowed gives the
    connection up, with the decoder's reason."""
    session = Session(URL)
    with caplog.at_level(logging.WARNING, logger="progress_client.events"):
        for _ in range(MAX_INVALID_MESSAGES - 1):
            assert session.receive(state(step_seconds=0)) is None
        assert session.failure is None
        assert session.receive("not json") is None
    assert session.failure is not None
    assert session.failure.startswith("the server sent invalid messages (")
    assert len(caplog.records) == MAX_INVALID_MESSAGES
    assert all("\n" not in r.getMessage() for r in caplog.records)


def test_a_flood_of_older_states_fills_no_log(caplog: pytest.LogCaptureFixture) -> None:
    """Dropped states are logged, up to the bound: the rest are dropped silently."""
    session = Session(URL)
    session.receive(state("IDLE", 100))
    with caplog.at_level(logging.WARNING, logger="progress_client.events"):
        for seq in range(50):
            assert session.receive(state("IDLE", seq)) is None
    assert len(caplog.records) == MAX_INVALID_MESSAGES
