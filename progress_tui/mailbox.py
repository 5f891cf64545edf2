"""What the network worker hands the screen: the latest truth, bounded.

A server may send states faster than any screen draws them (a flood, or runs at the
shortest step). Posting each one to Textual's queue, which has no bound, let that queue
grow by thousands a second: memory grew, the screen showed the past, and ``q`` waited
behind it all. The worker puts each event in a :class:`Mailbox` instead, and wakes the
app only when no wake-up is pending; the app takes everything at once, at most 20 times
a second (``TAKE_PERIOD`` in :mod:`progress_tui.app`).

In the mailbox, a newer full snapshot (a state, the clients count, the history) takes
the place of an undrawn older one, as the server's hub does for a slow client. What is
not a snapshot (connection events, acks, errors), and the states the log lists, are
kept in order; when too many wait, :meth:`Mailbox.room` holds the worker back, and with
it the reading of the socket.

The event log lists up to :data:`LISTED_EACH` changes a second one by one, as they came:
those are never folded. Past that, the changes are counted, and one :class:`Summary` a
second says how many the log did not list.

Replies are kept when this app awaits them (:meth:`Mailbox.expect`); of those nobody
asked for (a server that floods errors), :data:`LISTED_EACH` a second are kept, and the
rest are counted in one :class:`FoldedReplies` that the screen says in one line.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from progress_client.events import (
    ActionAccepted,
    ClientEvent,
    ClientsChanged,
    Closed,
    Connected,
    Connecting,
    ConnectionLost,
    HistoryReceived,
    PresenceChanged,
    ServerError,
    StateReceived,
    StoreChanged,
    Waiting,
)
from progress_protocol.states import StateSnapshot

__all__ = [
    "KEPT_LIMIT",
    "LISTED_EACH",
    "Entry",
    "FoldedReplies",
    "Mailbox",
    "QuietState",
    "Summary",
]

#: Changes a second the event log lists one by one; the others are summed up.
LISTED_EACH = 10
#: Entries that nothing replaces (connection events, replies, listed states) waiting
#: at once before the worker is held back.
KEPT_LIMIT = 64
#: Events put between two takes before the worker is held back until the next: the
#: screen takes at most 20 times a second, so reading (and decoding) what a flood
#: sends costs a bounded share of the CPU, and keys stay quick. A server that sends
#: more waits on TCP (ours conflates for a slow reader).
PER_TAKE = 250


@dataclass(frozen=True, slots=True)
class QuietState:
    """A state to draw that the event log does not list (a :class:`Summary` counts it,
    or it repeats the state before)."""

    received: StateReceived


@dataclass(frozen=True, slots=True)
class Summary:
    """The changes the event log did not list in one window: how many, and the last."""

    changes: int
    seconds: float
    last: StateSnapshot


@dataclass(frozen=True, slots=True)
class FoldedReplies:
    """Replies nobody here asked for, past the ones kept: how many, and the last."""

    count: int
    last: ActionAccepted | ServerError


Entry = ClientEvent | QuietState | Summary | FoldedReplies

#: Events after which what comes is another story: states, counts and histories are
#: never folded across them (the first state after a connection is its resync point,
#: and the last one before a loss is what stays on screen).
_BARRIERS = (Connecting, Connected, ConnectionLost, Waiting, Closed)


class Mailbox:
    """The events the screen has not taken yet, the snapshots among them conflated.

    Pure but for :meth:`room`: the caller gives the time (the event loop's).

    Args:
        listed_each: Changes per ``window`` listed one by one in the event log.
        window: The length of a window, in seconds.
        limit: Entries that nothing replaces, waiting at once, before :attr:`full`.

    Attributes:
        woken: A wake-up is pending: the owner was told there is news and has not taken
            it yet. At most one is ever in flight.
        peak: The most entries held at once so far.
    """

    def __init__(
        self, *, listed_each: int = LISTED_EACH, window: float = 1.0, limit: int = KEPT_LIMIT
    ) -> None:
        self.listed_each = listed_each
        self.window = window
        self.limit = limit
        self.woken = False
        self.peak = 0
        self.closed = False
        self._entries: list[Entry] = []
        #: Where the undrawn snapshot of each kind is, which a newer one replaces.
        self._slots: dict[type, int] = {}
        #: Entries that nothing replaces.
        self._kept = 0
        #: A state came since the last barrier.
        self._state_since_barrier = False
        self._last: StateSnapshot | None = None
        self._window_end = float("-inf")
        self._listed = 0
        self._unlisted = 0
        self._unlisted_last: StateSnapshot | None = None
        self._room = asyncio.Event()
        self._room.set()
        #: Events put since the last take.
        self.since_take = 0
        #: The request ids whose replies the owner awaits: those are always kept.
        self._expected: set[str] = set()
        self._reply_window_end = float("-inf")
        self._replies_kept = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def full(self) -> bool:
        """Too many entries that nothing replaces wait, or too many events came since
        the screen last took them: the worker should wait."""
        return (self._kept >= self.limit or self.since_take >= PER_TAKE) and not self.closed

    @property
    def summary_due(self) -> float | None:
        """When the current window ends, if it has changes to sum up; else None."""
        return self._window_end if self._unlisted else None

    def put(self, event: ClientEvent, now: float) -> bool:
        """Add one event that came at ``now``; returns whether the owner must be woken.

        It never waits: a caller that cares about the bound awaits :meth:`room` first.
        """
        if self.closed:
            return False
        self.since_take += 1
        match event:
            case StateReceived(snapshot=snapshot):
                self._put_state(event, snapshot, now)
            case ClientsChanged() | PresenceChanged() | StoreChanged() | HistoryReceived():
                self._replace(type(event), event)
            case ActionAccepted() | ServerError():
                self._put_reply(event, now)
            case _ if isinstance(event, _BARRIERS):
                # The changes before a loss are summed up before it is said.
                self._sum_up()
                self._keep(event)
                self._slots.clear()
                self._state_since_barrier = False
            case _:
                self._keep(event)
        return self._wake()

    def _put_state(self, event: StateReceived, snapshot: StateSnapshot, now: float) -> None:
        listed = False
        if snapshot != self._last:  # a repeat (a status reply) is not a change
            if now >= self._window_end:
                self._sum_up()
                self._window_end = now + self.window
                self._listed = 0
            if self._listed < self.listed_each:
                self._listed += 1
                listed = True
            else:
                self._unlisted += 1
                self._unlisted_last = snapshot
        self._last = snapshot
        entry: Entry = event if listed else QuietState(event)
        if listed or not self._state_since_barrier:
            # A listed state is in the log, in order; the first after a barrier is what
            # the app compares with the state before the loss. Neither is replaced, and
            # a later state must not take the place of one before them.
            self._state_since_barrier = True
            self._slots.pop(QuietState, None)
            self._keep(entry)
        else:
            self._replace(QuietState, entry)

    def expect(self, request_id: str) -> None:
        """The owner sent a request: its reply is kept, whatever else comes."""
        self._expected.add(request_id)

    def settled(self, request_id: str | None) -> None:
        """The owner has the reply to that request, or stopped waiting for it."""
        self._expected.discard(request_id or "")

    def _put_reply(self, event: ActionAccepted | ServerError, now: float) -> None:
        request_id = (
            event.ack.request_id if isinstance(event, ActionAccepted) else event.error.request_id
        )
        if request_id is not None and request_id in self._expected:
            self._keep(event)
            return
        if now >= self._reply_window_end:
            self._reply_window_end = now + self.window
            self._replies_kept = 0
        if self._replies_kept < self.listed_each:
            self._replies_kept += 1
            self._keep(event)
            return
        index = self._slots.get(FoldedReplies)
        folded = self._entries[index] if index is not None else None
        count = folded.count + 1 if isinstance(folded, FoldedReplies) else 1
        self._replace(FoldedReplies, FoldedReplies(count, event))

    def _keep(self, entry: Entry) -> None:
        self._entries.append(entry)
        self._kept += 1

    def _replace(self, kind: type, entry: Entry) -> None:
        """The newer snapshot takes the place of the undrawn older one, if any."""
        index = self._slots.get(kind)
        if index is None:
            self._slots[kind] = len(self._entries)
            self._entries.append(entry)
        else:
            self._entries[index] = entry

    def _sum_up(self) -> None:
        """End the window: a summary of the changes it did not list, if any."""
        if self._unlisted and self._unlisted_last is not None:
            self._keep(Summary(self._unlisted, self.window, self._unlisted_last))
            # A later state does not go before the summary.
            self._slots.pop(QuietState, None)
        self._unlisted = 0
        self._unlisted_last = None

    def end_window(self, due: float) -> bool:
        """The window that ends at ``due`` (a timer's) is over: sum it up now, if it is
        still the current one, so that a burst that stopped is summed up too. Returns
        whether the owner must be woken."""
        if self.closed or due != self._window_end or not self._unlisted:
            return False
        self._sum_up()
        self._window_end = float("-inf")
        return self._wake()

    def _wake(self) -> bool:
        self.peak = max(self.peak, len(self._entries))
        if self.woken or not self._entries:
            return False
        self.woken = True
        return True

    def take(self) -> list[Entry]:
        """Everything waiting, in order; the mailbox is empty and awake again."""
        entries = self._entries
        self._entries = []
        self._slots.clear()
        self._kept = 0
        self.since_take = 0
        self.woken = False
        self._room.set()
        return entries

    async def room(self) -> None:
        """Until the mailbox is not :attr:`full` (at once if it is not)."""
        while self.full:
            self._room.clear()
            await self._room.wait()

    def close(self) -> None:
        """Take nothing more, and let a waiting worker go on (to read the close)."""
        self.closed = True
        self._entries = []
        self._slots.clear()
        self._kept = 0
        self._room.set()
