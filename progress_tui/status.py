"""Where the app stands with its server, pure, no Textual: the connection, what may be
sent now (and the words of a refusal), and whether a reconnect lost the running
calculation.

Where a refusal's words live: the server refuses an action in its own sentence (the
``error`` message's text, written by the server's calculation), shown as it comes under
a title from :data:`ERROR_TITLES`; a refused connection is the server's sentence too,
read by ``progress_client/failures.py``; what this app refuses before sending anything
is :func:`refusal`; and who did what, when, is worded by ``progress_client/wording.py``,
the same in progress-ctl.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from progress_client.events import ConnectionStatus
from progress_protocol.messages import Command, ErrorCode
from progress_protocol.states import Run, State, StateSnapshot

__all__ = [
    "ERROR_TITLES",
    "STORE_DOWN",
    "ConnectionInfo",
    "Identity",
    "lost_on_resync",
    "refusal",
]

#: What the status bar and the log say while the server cannot reach its store.
STORE_DOWN = "Store unreachable: the run continues when it is back"

#: Titles for people of the server's error codes; another code is "Refused".
ERROR_TITLES: dict[str, str] = {
    ErrorCode.FORBIDDEN: "Not allowed",
    ErrorCode.ALREADY_RUNNING: "Already running",
    ErrorCode.NOT_RUNNING: "Not running",
    ErrorCode.RATE_LIMITED: "Rate limited",
    ErrorCode.UNAVAILABLE: "Store unreachable",
    ErrorCode.INTERNAL_ERROR: "Server error",
    ErrorCode.INVALID_JSON: "Not understood",
    ErrorCode.INVALID_MESSAGE: "Not understood",
    ErrorCode.UNKNOWN_ACTION: "Not understood",
    ErrorCode.UNSUPPORTED_FRAME: "Not understood",
}


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the app knows of its connection (the status bar, the banner and the keys
    show it).

    Attributes:
        retry_at: When the next attempt starts, in the event loop's time.
        error: Why the last attempt or connection failed, or why the client stopped,
            in a few words for a line on screen ("nothing at /wrong (HTTP
            404)").
        stopped: The client gave up (a refusal for good, or a failure of its loop):
            only the user's ``r`` starts it again.
        details: The whole sentence of ``error`` where that is cut short (a server's
            refusal can list every endpoint): the event log and the help screen have it.
    """

    status: ConnectionStatus
    url: str
    attempt: int = 0
    retry_at: float | None = None
    error: str | None = None
    stopped: bool = False
    details: str | None = None

    @property
    def connected(self) -> bool:
        return self.status is ConnectionStatus.CONNECTED


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the server takes this app for, as its last hello said.

    Attributes:
        name: The name its actions are attributed to (the token's, with a tokens
            file); None: it gave none.
        role: ``viewer``, ``operator``; None from a server before roles.
        commands: What it may send; None from a server before roles (everything).
    """

    name: str | None = None
    role: str | None = None
    commands: tuple[Command, ...] | None = None

    def may(self, action: Command) -> bool:
        return self.commands is None or action in self.commands


def refusal(
    action: Command,
    connection: ConnectionInfo,
    *,
    expects_running: bool,
    identity: Identity | None = None,
    store_reachable: bool = True,
) -> tuple[str, str] | None:
    """Why ``action`` cannot be sent now, as (title, sentence); None if it can.

    Args:
        connection: Where the connection stands.
        expects_running: Whether a calculation runs once the server has the actions
            sent so far.
        identity: Who the server takes the app for: a role may not allow the action.
        store_reachable: Whether the server can reach its store: the server refuses
            every action while it cannot.
    """
    if identity is not None and not identity.may(action):
        role = identity.role or "this role"
        return (
            ERROR_TITLES[ErrorCode.FORBIDDEN],
            f"You are a {role}: a {role} may watch but not {action}. "
            "Ask an operator, or for an operator's token.",
        )
    if not connection.connected:
        if connection.stopped:
            return "Not connected", f"Cannot {action}: not connected. Press r to try again."
        return "Not connected", f"Cannot {action} yet: not connected to the server."
    if not store_reachable:
        return (
            ERROR_TITLES[ErrorCode.UNAVAILABLE],
            f"Cannot {action} now: the server cannot reach its store. "
            "The run continues when it is back.",
        )
    # Refused here as the server would refuse it, under the same title.
    if action == "start" and expects_running:
        return (
            ERROR_TITLES[ErrorCode.ALREADY_RUNNING],
            "A calculation is already running: cancel it with c, or wait for it to end.",
        )
    if action == "cancel" and not expects_running:
        return ERROR_TITLES[ErrorCode.NOT_RUNNING], "There is no running calculation to cancel."
    return None


def lost_on_resync(
    before: StateSnapshot, after: StateSnapshot, history: Iterable[Run] | None = None
) -> bool | None:
    """Whether the calculation ``before`` showed running is gone from the server.

    Args:
        before: The last state seen before the connection was lost.
        after: The first state after reconnecting.
        history: The history sent after it, or None while it has not come.

    Returns:
        True if it is lost (the server restarted: its seq went back, it is IDLE, or the
        calculation is in neither the state nor the history), False if it is not, None
        if only the history can tell.
    """
    if not before.state.is_running or before.calculation_id is None:
        return False
    if after.calculation_id == before.calculation_id:
        return False
    if after.state is State.IDLE or after.seq < before.seq:
        return True
    if history is None:
        return None
    return all(run.calculation_id != before.calculation_id for run in history)
