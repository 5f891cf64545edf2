"""Which ends of a calculation the app tells of, by the user's choice. Pure, no Textual.

The app tells of an end it saw coming (a run it saw running, or one it started), never
of a run already over when it connected (:class:`~progress_client.notifications.EndWatch`),
nor of a cancel it sent itself: whoever pressed c knows.
``--notify`` (or ``PROGRESS_NOTIFY``) and the ``n`` key choose which: the runs this app
started (the default), every run, or none. "Started here" is known from the acks of this
app's own start requests: their calculation ids stay true across reconnects, when the
app's client id changes.
"""

from __future__ import annotations

import enum
from collections import deque

from progress_client.notifications import EndWatch
from progress_protocol.states import State, StateSnapshot

__all__ = ["Ends", "Notify"]

#: The calculations remembered as started (or canceled) here; the oldest go first.
MAX_REMEMBERED = 64


class Notify(enum.StrEnum):
    """Which ends the app tells of: the setting's values, in the order ``n`` cycles."""

    MINE = "mine"
    ALL = "all"
    OFF = "off"

    @property
    def following(self) -> Notify:
        """The next setting, as ``n`` cycles: mine, all, off, mine..."""
        members = list(Notify)
        return members[(members.index(self) + 1) % len(members)]

    @property
    def meaning(self) -> str:
        """What the setting does, for people."""
        return {
            Notify.MINE: "when a run you started ends",
            Notify.ALL: "when any run ends",
            Notify.OFF: "never",
        }[self]


class Ends:
    """The ends to tell of.

    Args:
        choice: Which ends, at first; :attr:`choice` may change at any time.
    """

    def __init__(self, choice: Notify = Notify.MINE) -> None:
        self.choice = choice
        self._watch = EndWatch()
        self._started: deque[str] = deque(maxlen=MAX_REMEMBERED)
        self._canceled: deque[str] = deque(maxlen=MAX_REMEMBERED)

    def started(self, calculation_id: str) -> None:
        """This app started ``calculation_id`` (the ack of its start said so)."""
        self._started.append(calculation_id)
        self._watch.follow(calculation_id)

    def canceled(self, calculation_id: str) -> None:
        """This app canceled ``calculation_id`` (the ack of its cancel said so)."""
        self._canceled.append(calculation_id)

    def is_mine(self, calculation_id: str | None) -> bool:
        return calculation_id is not None and calculation_id in self._started

    def tell(self, snapshot: StateSnapshot) -> bool:
        """Take one state (each, in order); True if it is an end to tell of now."""
        if not self._watch.seen(snapshot):
            return False
        if snapshot.state is State.CANCELED and snapshot.calculation_id in self._canceled:
            return False
        if self.choice is Notify.MINE:
            return self.is_mine(snapshot.calculation_id)
        return self.choice is Notify.ALL
