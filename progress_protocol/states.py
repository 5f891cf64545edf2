"""The calculation's states and the records that describe it: plain, frozen data.

The rules that move a calculation from state to state are the server's
(:mod:`progress_server.calculation`); what a state *is* belongs to both sides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "DEFAULT_STEP_SECONDS",
    "RUNNING_STATES",
    "Attribution",
    "Run",
    "State",
    "StateSnapshot",
]

DEFAULT_STEP_SECONDS = 2.0


class State(enum.StrEnum):
    """Where the calculation is."""

    IDLE = "IDLE"
    STARTING = "STARTING"
    IN_PROGRESS = "IN_PROGRESS"
    ALMOST_DONE = "ALMOST_DONE"
    SUCCESS = "SUCCESS"
    CANCELED = "CANCELED"

    @property
    def is_running(self) -> bool:
        return self in RUNNING_STATES

    @property
    def is_final(self) -> bool:
        return self in (State.SUCCESS, State.CANCELED)


#: The states a running calculation goes through, in order; SUCCESS follows the last.
RUNNING_STATES: tuple[State, ...] = (State.STARTING, State.IN_PROGRESS, State.ALMOST_DONE)


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who asked for a start or a cancel.

    Attributes:
        client_id: The WebSocket client's id; None for an HTTP request.
        name: What the client calls itself (``user@host``), or a stand-in for one
            that did not say: its client id, or ``http <address>``.
    """

    client_id: str | None
    name: str


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """One published state of the calculation; each change gets a new, larger ``seq``.

    A snapshot alone tells the whole picture of its calculation: when it started,
    which step a cancel interrupted, and who asked.

    Attributes:
        started_at: Unix time of the current calculation's start; None when IDLE.
        canceled_during: For CANCELED, the running state it interrupted.
        by: For STARTING and CANCELED, who asked; None for the timer's transitions.
        started_by: Who started the current calculation, on every state of it, so that
            a client that joins in the middle knows too; None when IDLE.
    """

    state: State
    calculation_id: str | None
    seq: int
    changed_at: float
    step_seconds: float
    started_at: float | None = None
    canceled_during: State | None = None
    by: Attribution | None = None
    started_by: Attribution | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """One finished calculation, as the history keeps it."""

    calculation_id: str
    started_at: float
    ended_at: float
    outcome: State  # SUCCESS or CANCELED
    canceled_during: State | None
    started_by: Attribution | None
    canceled_by: Attribution | None

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended_at - self.started_at)
