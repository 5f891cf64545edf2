"""The mailbox between the network worker and the screen, without a screen."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from progress_client.events import (
    ActionAccepted,
    ClientsChanged,
    Connected,
    ConnectionLost,
    HistoryReceived,
    ServerError,
    StateReceived,
)
from progress_protocol.messages import Ack, Error
from progress_protocol.states import State, StateSnapshot
from progress_tui.mailbox import Entry, Mailbox, QuietState, Summary
from tests.helpers import TIMEOUT

URL = "ws://127.0.0.1:3003/progress"


def change(seq: int, state: State = State.IN_PROGRESS) -> StateReceived:
    return StateReceived(StateSnapshot(state, f"run{seq}", seq, 1_700_000_000.0 + seq, 2.0))


def seqs(entries: Sequence[Entry]) -> list[object]:
    """Each entry in short: a listed state's seq, ("quiet", seq), ("summary", n, seq),
    or the event's type name."""
    shown: list[object] = []
    for entry in entries:
        match entry:
            case StateReceived(snapshot=snapshot):
                shown.append(snapshot.seq)
            case QuietState(received=received):
                shown.append(("quiet", received.snapshot.seq))
            case Summary(changes=changes, last=last):
                shown.append(("summary", changes, last.seq))
            case _:
                shown.append(type(entry).__name__)
    return shown


def test_past_the_listed_ones_a_newer_state_replaces_the_undrawn_one() -> None:
    """The first changes of a window are kept, in order, for the log; past them one
    state stands for the rest (the newest), and the next window starts with a summary
    of how many there were."""
    mailbox = Mailbox(listed_each=3)
    for seq in range(1, 101):
        mailbox.put(change(seq), now=0.5)
    assert seqs(mailbox.take()) == [1, 2, 3, ("quiet", 100)]
    for seq in range(101, 106):
        mailbox.put(change(seq), now=1.0)
    mailbox.put(change(106), now=1.6)  # the next window
    assert seqs(mailbox.take()) == [("quiet", 105), ("summary", 102, 105), 106]


def test_states_are_not_folded_across_connection_events() -> None:
    """The last state before a loss, and the first after reconnecting, are each drawn;
    the changes before the loss are summed up before it."""
    mailbox = Mailbox(listed_each=1)
    mailbox.put(change(1), now=0.0)
    mailbox.put(change(2), now=0.1)
    mailbox.put(change(3), now=0.2)
    mailbox.put(ConnectionLost(URL, "the connection was lost", 1006), now=0.3)
    mailbox.put(Connected(URL, "progress-server/1", "c2"), now=0.4)
    mailbox.put(change(4), now=0.5)
    mailbox.put(change(5), now=0.6)
    mailbox.put(change(6), now=0.7)
    assert seqs(mailbox.take()) == [
        1,
        ("quiet", 3),
        ("summary", 2, 3),
        "ConnectionLost",
        "Connected",
        ("quiet", 4),
        ("quiet", 6),
    ]


def test_replies_stay_in_order_and_counts_and_histories_are_the_newest() -> None:
    """Acks and errors are all kept, in order; a clients count or a history replaces
    the one not drawn yet, in its place."""
    mailbox = Mailbox()
    ack = ActionAccepted(Ack("start", "run1", "start-1"))
    error = ServerError(Error("not_running", "Nothing runs.", "cancel-2"))
    mailbox.put(ClientsChanged(1), now=0.0)
    mailbox.put(HistoryReceived(()), now=0.0)
    mailbox.put(ack, now=0.0)
    mailbox.put(ClientsChanged(2), now=0.0)
    mailbox.put(error, now=0.0)
    mailbox.put(ClientsChanged(3), now=0.0)
    assert mailbox.take() == [ClientsChanged(3), HistoryReceived(()), ack, error]


def test_a_repeated_state_is_not_a_change() -> None:
    """A state sent again (a status reply) takes no place in the log's count."""
    mailbox = Mailbox(listed_each=1)
    mailbox.put(change(1), now=0.0)
    for _ in range(5):
        mailbox.put(change(1), now=0.1)
    assert seqs(mailbox.take()) == [1, ("quiet", 1)]
    assert mailbox.summary_due is None


def test_one_wake_up_until_the_owner_takes() -> None:
    """put() asks to wake the owner once; not again until it has taken the news."""
    mailbox = Mailbox()
    assert mailbox.put(change(1), now=0.0)
    assert not mailbox.put(change(2), now=0.0)
    assert not mailbox.put(ClientsChanged(2), now=0.0)
    mailbox.take()
    assert not mailbox.woken and len(mailbox) == 0
    assert mailbox.put(change(3), now=0.0)


def test_a_burst_that_stops_is_summed_up_when_its_window_ends() -> None:
    """No change follows the burst: its window's end (a timer's) sums it up; a timer
    of an earlier window does nothing."""
    mailbox = Mailbox(listed_each=1)
    for seq in range(1, 11):
        mailbox.put(change(seq), now=5.0)
    mailbox.take()
    due = mailbox.summary_due
    assert due == 6.0
    assert not mailbox.end_window(due - 1.0)
    assert mailbox.end_window(due)
    assert seqs(mailbox.take()) == [("summary", 9, 10)]
    assert mailbox.summary_due is None
    mailbox.put(change(11), now=6.5)  # a new window
    assert seqs(mailbox.take()) == [11]


async def test_a_full_mailbox_holds_the_worker_back_until_taken() -> None:
    """Past the limit of entries that nothing replaces, room() waits for a take; states
    still replace each other meanwhile."""
    mailbox = Mailbox(limit=3)
    for seq in range(3):
        mailbox.put(ServerError(Error("x", "No.", f"start-{seq}")), now=0.0)
    assert mailbox.full
    waiting = asyncio.create_task(mailbox.room())
    await asyncio.sleep(0)
    assert not waiting.done()
    mailbox.take()
    await asyncio.wait_for(waiting, TIMEOUT)


async def test_a_closed_mailbox_takes_nothing_and_holds_no_one_back() -> None:
    """After quitting, the worker reads on to the server's close: nothing waits."""
    mailbox = Mailbox(limit=1)
    mailbox.put(ServerError(Error("x", "No.", None)), now=0.0)
    waiting = asyncio.create_task(mailbox.room())
    await asyncio.sleep(0)
    mailbox.close()
    await asyncio.wait_for(waiting, TIMEOUT)
    assert not mailbox.put(change(1), now=0.0)
    assert len(mailbox) == 0
