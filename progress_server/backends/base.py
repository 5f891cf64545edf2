"""The seam between the server and where the calculation lives.

A backend owns the one shared calculation: it performs the actions and tells every
subscriber about every change, in order. The server instance keeps the connected
clients and fans the changes out to them (:mod:`progress_server.hub`); it never
touches the calculation directly. The in-memory backend is the default and needs
nothing installed; a Redis backend, for several server instances sharing one
calculation, sits beside it behind the same interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from progress_protocol.states import Attribution, Run, StateSnapshot

from ..calculation import Change
from ..presence import Roster

__all__ = [
    "Backend",
    "BackendUnavailable",
    "CommitListener",
    "CountListener",
    "LatencyListener",
    "Listener",
    "Unsubscribe",
]


class BackendUnavailable(Exception):
    """The store of the shared calculation cannot be reached; the message says why."""


Listener = Callable[[Change], None]
#: Hears the other instances' clients: how many, and who.
CountListener = Callable[[int, Roster], None]
CommitListener = Callable[[tuple[StateSnapshot, ...]], None]
LatencyListener = Callable[[float], None]
Unsubscribe = Callable[[], None]


class Backend(Protocol):
    """Where the shared calculation's state lives and how its changes are announced.

    Lifecycle: ``start()`` before anything else (connect, subscribe), ``aclose()`` at
    the end. The rules themselves are :mod:`progress_server.calculation`'s, the same
    for every backend: a backend only stores the record and announces the changes.

    Contract:
    - Every method first catches up with the clock: the transitions whose deadline
      has passed are applied before anything else.
    - ``start_calculation`` and ``cancel_calculation`` apply the action at once, or raise
      :class:`~progress_server.calculation.ActionRefused`. A refused action changes
      nothing itself, but the transitions it caught up with are real changes: every
      one of them is announced, in order, *before* the refusal reaches the caller,
      so that no client ever misses one (a cancel just after the last deadline
      announces SUCCESS, then is refused).
    - Listeners get every change exactly once, oldest first, with no gap in ``seq``;
      an accepted action's changes come *after* its caller has resumed, so its
      reply can go out before its broadcast.
    - A listener never blocks; an exception in one is logged and does not reach
      the others or the calculation.
    - When the store cannot be reached, the methods that need it raise
      :class:`BackendUnavailable`, and :attr:`problem` says why.
    """

    @property
    def action_seconds(self) -> float:
        """The longest an action may take before its caller is answered (a store that
        does not answer costs this much, then ``unavailable``)."""
        ...

    async def start(self) -> None:
        """Get ready: connect, subscribe. Listeners subscribed before hear every change
        from then on, so a server subscribes, then reads the first snapshot."""
        ...

    async def snapshot(self) -> StateSnapshot:
        """The current state."""
        ...

    async def history(self) -> tuple[Run, ...]:
        """The last finished calculations, newest first."""
        ...

    async def start_calculation(self, by: Attribution | None = None) -> StateSnapshot:
        """Start a calculation for ``by``; returns the STARTING snapshot."""
        ...

    async def cancel_calculation(self, by: Attribution | None = None) -> StateSnapshot:
        """Cancel the running calculation for ``by``; returns the CANCELED snapshot."""
        ...

    def subscribe(self, listener: Listener) -> Unsubscribe:
        """Call ``listener`` with every change from now on."""
        ...

    #: Called with the changes this process committed, once each: what the metrics
    #: count, so that instances (and workers) sharing a calculation do not count
    #: every change once each.
    on_commit: CommitListener | None

    #: Called with the seconds each round trip to the store took (the latency
    #: histogram); a backend with no store to reach never calls it.
    on_latency: LatencyListener | None

    #: Called with :attr:`problem` when the store is lost (a sentence) and when it is
    #: back (None), once each way; a backend with no store to lose never calls it.
    on_problem: Callable[[str | None], None] | None

    #: The fingerprint of the instance's tokens file (None: none), which a shared
    #: store compares over every instance: a mismatch is logged.
    tokens_fingerprint: str | None

    @property
    def problem(self) -> str | None:
        """Why the calculation cannot be reached now (a sentence); None while it can."""
        ...

    def report_clients(self, count: int, roster: Roster) -> None:
        """This instance now has ``count`` clients, who are ``roster`` (which the
        backend may keep and read later: the hub keeps it current)."""
        ...

    def subscribe_clients(self, listener: CountListener) -> Unsubscribe:
        """Call ``listener`` with the number of the other instances' clients, and their
        rosters together, whenever either changes (this instance's own, its hub knows
        live)."""
        ...

    async def aclose(self) -> None:
        """Stop every timer; no change follows."""
        ...
