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
from dataclasses import dataclass
from typing import Protocol

from ..calculation import Attribution, Run, StateSnapshot

__all__ = ["Backend", "Change", "Listener", "Unsubscribe"]


@dataclass(frozen=True, slots=True)
class Change:
    """One change of the calculation, as listeners hear it.

    Attributes:
        snapshot: The new state.
        history: The history after it, newest first, when this change ended a
            calculation (SUCCESS or CANCELED); None otherwise.
    """

    snapshot: StateSnapshot
    history: tuple[Run, ...] | None = None


Listener = Callable[[Change], None]
Unsubscribe = Callable[[], None]


class Backend(Protocol):
    """Where the shared calculation's state lives and how its changes are announced.

    Contract:
    - Every method first catches up with the clock: the transitions whose deadline
      has passed are applied before anything else.
    - ``start`` and ``cancel`` apply the action at once, or raise
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
    """

    @property
    def step_seconds(self) -> float: ...

    async def snapshot(self) -> StateSnapshot:
        """The current state."""
        ...

    async def history(self) -> tuple[Run, ...]:
        """The last finished calculations, newest first."""
        ...

    async def start(self, by: Attribution | None = None) -> StateSnapshot:
        """Start a calculation for ``by``; returns the STARTING snapshot."""
        ...

    async def cancel(self, by: Attribution | None = None) -> StateSnapshot:
        """Cancel the running calculation for ``by``; returns the CANCELED snapshot."""
        ...

    def subscribe(self, listener: Listener) -> Unsubscribe:
        """Call ``listener`` with every change from now on."""
        ...

    async def aclose(self) -> None:
        """Stop every timer; no change follows."""
        ...
