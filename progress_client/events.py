"""What the client tells its consumer: the events, and the decoding of one
connection's messages into them.

:class:`~progress_client.client.ProgressClient` yields these events; a :class:`Session`
turns what one connection receives into them. The server is not trusted: every message
goes through the protocol's bounded decoder, a message that fails it is skipped, a state
older than one already seen is dropped, and a connection that keeps sending invalid
messages is given up (:attr:`Session.failure`).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from progress_protocol.messages import (
    PROTOCOL_VERSION,
    Ack,
    Clients,
    Command,
    Error,
    Hello,
    History,
    Presence,
    ProtocolError,
    StateMessage,
    Store,
    Unknown,
    decode_server_message,
)
from progress_protocol.states import Run, StateSnapshot

__all__ = [
    "MAX_INVALID_MESSAGES",
    "ActionAccepted",
    "ClientEvent",
    "ClientsChanged",
    "Closed",
    "Connected",
    "Connecting",
    "ConnectionLost",
    "ConnectionStatus",
    "HistoryReceived",
    "PresenceChanged",
    "ServerError",
    "Session",
    "StateReceived",
    "StoreChanged",
    "Waiting",
]

logger = logging.getLogger(__name__)

#: Invalid messages one connection may send before the client gives it up. A few are
#: skipped (a glitch, a newer server's field); a stream of them is a broken server.
MAX_INVALID_MESSAGES = 5


class ConnectionStatus(enum.StrEnum):
    """Where the connection stands, as a consumer follows it through the events:
    :class:`Connecting`, :class:`Connected`, :class:`Waiting`, :class:`Closed`."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # waiting before the next attempt
    DISCONNECTED = "disconnected"


# The events, in the order a consumer meets them.


@dataclass(frozen=True, slots=True)
class Connecting:
    """An attempt to connect begins."""

    url: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Connected:
    """The server said hello; its state follows at once.

    Attributes:
        name: Who the server attributes this client's actions to (its token's name,
            with a tokens file); None: no name.
        role: ``viewer`` or ``operator``; None from a server before roles.
        commands: The commands this client may send; None from a server before roles
            (every one).
    """

    url: str
    server: str
    client_id: str
    name: str | None = None
    role: str | None = None
    commands: tuple[Command, ...] | None = None


@dataclass(frozen=True, slots=True)
class StateReceived:
    snapshot: StateSnapshot


@dataclass(frozen=True, slots=True)
class HistoryReceived:
    """The last finished calculations, newest first."""

    runs: tuple[Run, ...]


@dataclass(frozen=True, slots=True)
class ClientsChanged:
    count: int


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """Who is connected, over every instance."""

    presence: Presence


@dataclass(frozen=True, slots=True)
class StoreChanged:
    """The server lost its store (``reachable`` False: the calculation stands still and
    actions are refused until it is back), or has it back. A new connection starts
    with the store reachable unless told otherwise."""

    reachable: bool


@dataclass(frozen=True, slots=True)
class ActionAccepted:
    ack: Ack


@dataclass(frozen=True, slots=True)
class ServerError:
    """The server refused a request; ``error.message`` is a sentence for a person."""

    error: Error


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The live connection to ``url`` ended, or the client gave it up (``reason`` says
    which)."""

    url: str
    reason: str
    code: int | None


@dataclass(frozen=True, slots=True)
class Waiting:
    """The client waits ``delay`` seconds, until ``retry_at`` (loop time), before
    ``attempt``, which goes to ``url``.

    Attributes:
        error: Why the last attempt or connection failed: the one to the URL of the
            :class:`Connecting` or :class:`ConnectionLost` just before, which is another
            URL than ``url`` when the client fails over.
        permanent: That URL refused the handshake for good: it is left out until the
            loop starts again (:meth:`~progress_client.client.ProgressClient.events` anew).
    """

    url: str
    delay: float
    retry_at: float
    attempt: int
    error: str
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class Closed:
    """The loop stopped: closed by its owner (``reason`` is "closed"), refused for good,
    or failed with reconnecting off.

    Attributes:
        reason: Why, as a phrase safe to show: the last failure's (that of
            :attr:`~progress_client.client.ProgressClient.url`); with several URLs,
            the :class:`Waiting` events before it told the others'.
        permanent: Trying again cannot help until the settings change: the server (every
            URL's) refused the handshake for good (HTTP 400, 401, 403, 404, 426...) or
            its certificate is not trusted.
    """

    reason: str
    permanent: bool = False


ClientEvent = (
    Connecting
    | Connected
    | StateReceived
    | ClientsChanged
    | PresenceChanged
    | StoreChanged
    | HistoryReceived
    | ActionAccepted
    | ServerError
    | ConnectionLost
    | Waiting
    | Closed
)


class Session:
    """One connection's messages read into events: what it has sent so far, and
    whether the client gives it up. Pure.

    Attributes:
        greeted: The server said hello.
        failure: Why the client gives this connection up, or None.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.greeted = False
        self.failure: str | None = None
        self.invalid = 0
        self.stale = 0
        self.last: StateSnapshot | None = None

    def receive(self, data: str | bytes) -> ClientEvent | None:
        """The event of one message, or None for a message to skip."""
        try:
            message = decode_server_message(data)
        except ProtocolError as exc:
            self.invalid += 1
            logger.warning("ignored an invalid message from the server: %s", exc.message)
            if self.invalid >= MAX_INVALID_MESSAGES:
                self.failure = f"the server sent invalid messages ({exc.message.rstrip('.')})"
            return None
        match message:
            case Unknown():
                # A newer server's message: skipped without a word, and never counted.
                return None
            case Hello():
                if message.protocol != PROTOCOL_VERSION:
                    logger.warning("the server speaks protocol %d", message.protocol)
                self.greeted = True
                return Connected(
                    self.url,
                    message.server,
                    message.client_id,
                    message.name,
                    message.role,
                    message.commands,
                )
            case StateMessage(snapshot=snapshot):
                last = self.last
                # Each change has a larger seq: an older state (a reordering proxy, a
                # broken server) would show the past as the present. An equal seq is a
                # repeat (a status reply) only if nothing else differs.
                if last is not None and (
                    snapshot.seq < last.seq or (snapshot.seq == last.seq and snapshot != last)
                ):
                    self.stale += 1
                    if self.stale <= MAX_INVALID_MESSAGES:  # bounded: a flood fills no log
                        logger.warning(
                            "dropped a state with seq %d after seq %d", snapshot.seq, last.seq
                        )
                    return None
                self.last = snapshot
                return StateReceived(snapshot)
            case Clients(count=count):
                return ClientsChanged(count)
            case History(runs=runs):
                return HistoryReceived(runs)
            case Presence():
                return PresenceChanged(message)
            case Store(reachable=reachable):
                return StoreChanged(reachable)
            case Ack():
                return ActionAccepted(message)
            case Error():
                return ServerError(message)
        return None  # pragma: no cover - every type is matched above
