"""Protocol v1: the JSON messages between the server and its clients, and their codec.

Pure functions and dataclasses, no I/O: the server and every client of this project
(``progress-tui``, ``progress-ctl``) encode and decode through this module alone.
docs/protocol.md describes every message with an example.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from .states import Attribution, Run, State, StateSnapshot

__all__ = [
    "ACTIONS",
    "COMMANDS",
    "MAX_CHANGED_AT",
    "MAX_CLIENTS_COUNT",
    "MAX_CLIENT_KINDS",
    "MAX_ERROR_MESSAGE_LENGTH",
    "MAX_HISTORY_RUNS",
    "MAX_ID_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_PRESENCE_PEOPLE",
    "MAX_PROTOCOL_VERSION",
    "MAX_REQUEST_ID_LENGTH",
    "MAX_SEQ",
    "MAX_SERVER_NAME_LENGTH",
    "MAX_STEP_SECONDS",
    "MAX_USER_NAME_LENGTH",
    "NAME_HEADER",
    "PROTOCOL_VERSION",
    "ROLES",
    "ROLE_COMMANDS",
    "Ack",
    "Action",
    "Clients",
    "Command",
    "Error",
    "ErrorCode",
    "Hello",
    "History",
    "Person",
    "Presence",
    "ProtocolError",
    "Request",
    "ServerMessage",
    "StateMessage",
    "Store",
    "Unknown",
    "clean_name",
    "decode_request",
    "decode_server_message",
    "encode",
    "encode_request",
]

PROTOCOL_VERSION = 1
MAX_REQUEST_ID_LENGTH = 64

# The bounds of what a server may send; the clients refuse anything outside them, so
# that no value from the network can overflow a conversion or a division, or fill a
# screen. docs/protocol.md lists them.

#: The largest seq: JavaScript clients read JSON numbers as doubles, exact up to 2**53 - 1.
MAX_SEQ = 2**53 - 1
MAX_CLIENTS_COUNT = 2**31
MAX_PROTOCOL_VERSION = 2**31
#: changed_at is in unix seconds: 1e11 is in the year 5138, far beyond any real clock.
MAX_CHANGED_AT = 1e11
#: step_seconds is above 0 and at most a day (progress-server --step-seconds is as bounded).
MAX_STEP_SECONDS = 86_400.0
#: calculation_id and client_id.
MAX_ID_LENGTH = 64
MAX_SERVER_NAME_LENGTH = 128
MAX_ERROR_MESSAGE_LENGTH = 1024
#: Message types and error codes: lowercase names, like the ones protocol v1 defines.
MAX_NAME_LENGTH = 64
_NAME = re.compile(r"[a-z0-9_]+")
#: What a person calls themselves ("alice@laptop"), in ``by`` and the history.
MAX_USER_NAME_LENGTH = 64
#: The handshake header a client names itself with, percent-encoded UTF-8 (a header
#: carries ASCII); browsers, which cannot set headers on a WebSocket, use ``?name=``.
#: HTTP actions take it too.
NAME_HEADER = "X-Progress-Name"
#: Runs in a history message at most (the server keeps 20).
MAX_HISTORY_RUNS = 100
#: People a presence message lists at most; its ``total`` counts them all.
MAX_PRESENCE_PEOPLE = 50
#: Kinds of client a person in a presence message uses at most ("tui", "ctl"...).
MAX_CLIENT_KINDS = 8

#: What a client may ask for.
Action: TypeAlias = Literal["start", "cancel", "status", "history"]
ACTIONS: tuple[str, ...] = get_args(Action)
#: The actions that change the calculation (the others only read it): acked or refused.
Command: TypeAlias = Literal["start", "cancel"]
COMMANDS: tuple[str, ...] = get_args(Command)

#: What a token lets its holder do: a viewer watches (state, history, presence), an
#: operator also starts and cancels. A server without a tokens file makes everyone an
#: operator.
ROLE_COMMANDS: dict[str, tuple[Command, ...]] = {"viewer": (), "operator": ("start", "cancel")}
ROLES: tuple[str, ...] = tuple(ROLE_COMMANDS)


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` object, over WebSocket and HTTP alike."""

    # A message that does not follow the protocol.
    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_ACTION = "unknown_action"
    UNSUPPORTED_FRAME = "unsupported_frame"
    # An action the calculation's state refuses: nothing was changed.
    ALREADY_RUNNING = "already_running"
    NOT_RUNNING = "not_running"
    # The server cannot (or will not) serve it now.
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"
    # HTTP only: requests refused before they reach the calculation.
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNAUTHORIZED = "unauthorized"
    # A token that may not do this (a viewer's start or cancel): nothing was changed.
    FORBIDDEN = "forbidden"
    FORBIDDEN_HOST = "forbidden_host"
    FORBIDDEN_ORIGIN = "forbidden_origin"
    REQUEST_TOO_LARGE = "request_too_large"
    SERVER_FULL = "server_full"
    SHUTTING_DOWN = "shutting_down"


class ProtocolError(Exception):
    """A message that does not follow the protocol.

    Attributes:
        code: What is wrong, as an :class:`ErrorCode`.
        message: A sentence for a person.
        request_id: The offending request's id, when it could be read.
    """

    def __init__(self, code: ErrorCode, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def to_error(self) -> Error:
        return Error(code=self.code, message=self.message, request_id=self.request_id)


# Client to server.


@dataclass(frozen=True, slots=True)
class Request:
    """An action a client asks for."""

    action: Action
    request_id: str | None = None


def encode_request(request: Request) -> str:
    payload: dict[str, Any] = {"action": request.action}
    if request.request_id is not None:
        payload["request_id"] = request.request_id
    return _dumps(payload)


def decode_request(data: str | bytes) -> Request:
    """Read one client message.

    Args:
        data: A WebSocket message: text frames arrive as str, binary ones as bytes.

    Raises:
        ProtocolError: If the message is not a valid protocol v1 request.
    """
    if not isinstance(data, str):
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FRAME,
            "Binary frames are not supported; send JSON in a text frame.",
        )
    payload = _loads(data)
    if not isinstance(payload, dict):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"A message must be a JSON object, not {_json_type(payload)}.",
        )
    request_id = payload.get("request_id")
    if request_id is not None:
        if not isinstance(request_id, str):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"request_id must be a string, not {_json_type(request_id)}.",
            )
        if len(request_id) > MAX_REQUEST_ID_LENGTH:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"request_id must be at most {MAX_REQUEST_ID_LENGTH} characters long, "
                f"not {len(request_id)}.",
            )
        # Checked before any action is taken: the reply echoes request_id, and a lone
        # surrogate (e.g. "\ud800" in the JSON) could not be encoded in it.
        if not request_id.isprintable():
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"request_id {_UNPRINTABLE}")
    action = payload.get("action")
    if action is None:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            'A message needs an "action" field: "start", "cancel", "status" or "history".',
            request_id=request_id,
        )
    if not isinstance(action, str):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"action must be a string, not {_json_type(action)}.",
            request_id=request_id,
        )
    if not action.isprintable():
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"action {_UNPRINTABLE}", request_id=request_id
        )
    if action not in ACTIONS:
        raise ProtocolError(
            ErrorCode.UNKNOWN_ACTION,
            f'Unknown action {_preview(action)}; use "start", "cancel", "status" or "history".',
            request_id=request_id,
        )
    return Request(action=action, request_id=request_id)  # type: ignore[arg-type]


# Server to client.


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message on every connection: the server, this connection's id, and who
    the server takes the client for.

    Attributes:
        name: The name its actions are attributed to: its token's, with a tokens file,
            else the one it gave (None if it gave none).
        role: Its role (``viewer``, ``operator``); None from a server before roles.
        commands: The commands it may send; None from a server before roles (all).
    """

    server: str
    client_id: str
    protocol: int = PROTOCOL_VERSION
    name: str | None = None
    role: str | None = None
    commands: tuple[Command, ...] | None = None


@dataclass(frozen=True, slots=True)
class StateMessage:
    """The calculation's state: after hello, on every change, and for ``status``."""

    snapshot: StateSnapshot


@dataclass(frozen=True, slots=True)
class Ack:
    """An accepted action; the state broadcast follows."""

    action: Command
    calculation_id: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """A refused or malformed request; nothing was changed."""

    code: str
    message: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Clients:
    """How many clients are connected; sent whenever the number changes."""

    count: int


@dataclass(frozen=True, slots=True)
class History:
    """The last finished calculations, newest first: after hello and state, whenever a
    calculation ends, and for ``history``."""

    runs: tuple[Run, ...]


@dataclass(frozen=True, slots=True)
class Person:
    """Someone connected: a name and a role, over one connection or several.

    Attributes:
        name: Their name; None for clients that gave none (counted together).
        role: Their role.
        clients: The kinds of client they use, sorted: ``tui``, ``ctl``, ``browser``,
            ``other``.
        connections: How many connections.
    """

    name: str | None
    role: str
    clients: tuple[str, ...]
    connections: int


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is connected, over every instance: sent when it changes (coalesced like the
    clients count), and for ``GET /presence``.

    Attributes:
        people: The first :data:`MAX_PRESENCE_PEOPLE` people, by name.
        total: How many people in all (``people`` may list fewer).
        connections: How many connections in all.
    """

    people: tuple[Person, ...]
    total: int
    connections: int


@dataclass(frozen=True, slots=True)
class Store:
    """Whether the server can reach the store the calculation lives in (with
    ``--redis-url``): sent to everybody when it changes, and to a client that joins
    while it cannot. While it cannot, the calculation stands still for everyone and
    actions are refused (``unavailable``); it goes on when the store is back."""

    reachable: bool


ServerMessage: TypeAlias = Hello | StateMessage | Ack | Error | Clients | History | Presence | Store


def clean_name(text: str) -> str:
    """A person's name as the protocol carries it: control characters (and anything
    else that is not printable) removed, spaces trimmed, at most 64 characters."""
    kept = "".join(char for char in text if char.isprintable())
    return kept.strip()[:MAX_USER_NAME_LENGTH].strip()


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message of a type this client does not know, from a newer server: skip it.

    Never sent; :func:`decode_server_message` returns it so that a server can add
    message types without breaking older clients.
    """

    type: str


def to_dict(message: ServerMessage) -> dict[str, Any]:
    """The JSON object of a server message, as sent on the wire and by the HTTP API."""
    match message:
        case Hello(server=server, client_id=client_id, protocol=protocol):
            return {
                "type": "hello",
                "protocol": protocol,
                "server": server,
                "client_id": client_id,
                "name": message.name,
                "role": message.role,
                "commands": None if message.commands is None else list(message.commands),
            }
        case StateMessage(snapshot=snapshot):
            return {
                "type": "state",
                "state": snapshot.state.value,
                "calculation_id": snapshot.calculation_id,
                "seq": snapshot.seq,
                "changed_at": snapshot.changed_at,
                "step_seconds": snapshot.step_seconds,
                "started_at": snapshot.started_at,
                "canceled_during": _state_or_none(snapshot.canceled_during),
                "by": _attribution(snapshot.by),
                "started_by": _attribution(snapshot.started_by),
            }
        case Ack(action=action, calculation_id=calculation_id, request_id=request_id):
            return {
                "type": "ack",
                "action": action,
                "calculation_id": calculation_id,
                "request_id": request_id,
            }
        case Error(code=code, message=text, request_id=request_id):
            return {"type": "error", "code": code, "message": text, "request_id": request_id}
        case Clients(count=count):
            return {"type": "clients", "count": count}
        case History(runs=runs):
            return {"type": "history", "runs": [_run(run) for run in runs]}
        case Store(reachable=reachable):
            return {"type": "store", "reachable": reachable}
        case Presence(people=people, total=total, connections=connections):
            return {
                "type": "presence",
                "total": total,
                "connections": connections,
                "people": [
                    {
                        "name": person.name,
                        "role": person.role,
                        "clients": list(person.clients),
                        "connections": person.connections,
                    }
                    for person in people
                ],
            }
    raise TypeError(f"not a server message: {message!r}")  # pragma: no cover


def _state_or_none(state: State | None) -> str | None:
    return None if state is None else state.value


def _attribution(by: Attribution | None) -> dict[str, Any] | None:
    return None if by is None else {"client_id": by.client_id, "name": by.name}


def _run(run: Run) -> dict[str, Any]:
    return {
        "calculation_id": run.calculation_id,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "outcome": run.outcome.value,
        "canceled_during": _state_or_none(run.canceled_during),
        "started_by": _attribution(run.started_by),
        "canceled_by": _attribution(run.canceled_by),
    }


def encode(message: ServerMessage) -> str:
    """Encode a server message as the text of one frame."""
    return _dumps(to_dict(message))


def decode_server_message(data: str | bytes) -> ServerMessage | Unknown:
    """Read one server message (the clients' side of the codec).

    Every value is checked against the protocol's bounds (``MAX_SEQ`` and the others),
    and every string must be printable text. Unknown extra fields are ignored and a
    message of an unknown type decodes to :class:`Unknown`, so a newer server can add
    both.

    Raises:
        ProtocolError: If the message is not a valid protocol v1 server message.
    """
    if not isinstance(data, str):
        raise ProtocolError(ErrorCode.UNSUPPORTED_FRAME, "The server sent a binary frame.")
    payload = _loads(data)
    if not isinstance(payload, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "A server message must be a JSON object.")
    fields = _Fields(payload)
    kind = fields.name("type", max_length=MAX_NAME_LENGTH)
    match kind:
        case "hello":
            # name, role and commands came later in v1: a server that does not send
            # them is read as sending null.
            return Hello(
                server=fields.text("server", max_length=MAX_SERVER_NAME_LENGTH),
                client_id=fields.text("client_id", max_length=MAX_ID_LENGTH),
                protocol=fields.integer("protocol", 1, MAX_PROTOCOL_VERSION),
                name=fields.optional_text("name", max_length=MAX_USER_NAME_LENGTH),
                role=fields.optional_name("role", max_length=MAX_NAME_LENGTH),
                commands=fields.optional_commands("commands"),
            )
        case "state":
            # started_at, canceled_during, by and started_by came later in v1: a
            # server that does not send them is read as sending null.
            return StateMessage(
                StateSnapshot(
                    state=fields.state("state"),
                    calculation_id=fields.optional_text("calculation_id", max_length=MAX_ID_LENGTH),
                    seq=fields.integer("seq", 0, MAX_SEQ),
                    changed_at=fields.number("changed_at", 0.0, MAX_CHANGED_AT, high_open=True),
                    step_seconds=fields.number(
                        "step_seconds", 0.0, MAX_STEP_SECONDS, low_open=True
                    ),
                    started_at=fields.optional_time("started_at"),
                    canceled_during=fields.optional_state("canceled_during"),
                    by=fields.optional_attribution("by"),
                    started_by=fields.optional_attribution("started_by"),
                )
            )
        case "ack":
            action = fields.text("action", max_length=MAX_NAME_LENGTH)
            if action not in COMMANDS:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"Unknown ack {_preview(action)}.")
            return Ack(
                action=action,  # type: ignore[arg-type]
                calculation_id=fields.text("calculation_id", max_length=MAX_ID_LENGTH),
                request_id=fields.optional_text(
                    "request_id", min_length=0, max_length=MAX_REQUEST_ID_LENGTH
                ),
            )
        case "error":
            return Error(
                code=fields.name("code", max_length=MAX_NAME_LENGTH),
                message=fields.text("message", max_length=MAX_ERROR_MESSAGE_LENGTH),
                request_id=fields.optional_text(
                    "request_id", min_length=0, max_length=MAX_REQUEST_ID_LENGTH
                ),
            )
        case "clients":
            return Clients(count=fields.integer("count", 0, MAX_CLIENTS_COUNT))
        case "history":
            return History(tuple(_Fields(run, f"runs[{n}]").run() for n, run in fields.runs()))
        case "store":
            return Store(reachable=fields.boolean("reachable"))
        case "presence":
            people = tuple(
                _Fields(person, f"people[{n}]").person()
                for n, person in fields.objects("people", MAX_PRESENCE_PEOPLE)
            )
            total = fields.integer("total", len(people), MAX_CLIENTS_COUNT)
            connections = fields.integer("connections", 0, MAX_CLIENTS_COUNT)
            return Presence(people=people, total=total, connections=connections)
    return Unknown(kind)


_UNPRINTABLE = "must be printable text: no control characters, no lone surrogates."


class _Fields:
    """Typed and bounded access to the fields of a decoded server message.

    Args:
        payload: The JSON object.
        prefix: Where it sits in the message, for error sentences (``runs[3]``).
    """

    def __init__(self, payload: dict[str, Any], prefix: str = "") -> None:
        self.payload = payload
        self.prefix = prefix

    def _label(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def state(self, name: str) -> State:
        state_name = self.text(name, max_length=MAX_NAME_LENGTH)
        try:
            return State(state_name)
        except ValueError:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, f"Unknown state {_preview(state_name)}."
            ) from None

    def optional_state(self, name: str) -> State | None:
        return None if self.payload.get(name) is None else self.state(name)

    def time(self, name: str) -> float:
        return self.number(name, 0.0, MAX_CHANGED_AT, high_open=True)

    def optional_time(self, name: str) -> float | None:
        return None if self.payload.get(name) is None else self.time(name)

    def optional_attribution(self, name: str) -> Attribution | None:
        value = self.payload.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label(name)!r} must be an object, not {_json_type(value)}.",
            )
        inner = _Fields(value, self._label(name))
        return Attribution(
            client_id=inner.optional_text("client_id", max_length=MAX_ID_LENGTH),
            name=inner.text("name", max_length=MAX_USER_NAME_LENGTH),
        )

    def runs(self) -> list[tuple[int, dict[str, Any]]]:
        return self.objects("runs", MAX_HISTORY_RUNS)

    def objects(self, name: str, most: int) -> list[tuple[int, dict[str, Any]]]:
        """An array of at most ``most`` objects, numbered."""
        value = self.payload.get(name)
        if not isinstance(value, list) or len(value) > most:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label(name)!r} must be an array of at most {most} objects.",
            )
        for number, item in enumerate(value):
            if not isinstance(item, dict):
                raise ProtocolError(
                    ErrorCode.INVALID_MESSAGE, f"{self._label(name)}[{number}] must be an object."
                )
        return list(enumerate(value))

    def optional_name(self, name: str, *, max_length: int) -> str | None:
        return None if self.payload.get(name) is None else self.name(name, max_length=max_length)

    def optional_commands(self, name: str) -> tuple[Command, ...] | None:
        """The commands a hello allows; ones this client does not know are skipped."""
        value = self.payload.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or len(value) > MAX_CLIENT_KINDS:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label(name)!r} must be an array of at most "
                f"{MAX_CLIENT_KINDS} names.",
            )
        items = _Fields({str(n): item for n, item in enumerate(value)}, self._label(name))
        names = [items.name(str(n), max_length=MAX_NAME_LENGTH) for n in range(len(value))]
        return tuple(command for command in COMMANDS if command in names)  # type: ignore[misc]

    def person(self) -> Person:
        clients = self.payload.get("clients")
        if not isinstance(clients, list) or len(clients) > MAX_CLIENT_KINDS:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label('clients')!r} must be an array of at most "
                f"{MAX_CLIENT_KINDS} names.",
            )
        kinds = _Fields({str(n): kind for n, kind in enumerate(clients)}, self._label("clients"))
        return Person(
            name=self.optional_text("name", max_length=MAX_USER_NAME_LENGTH),
            role=self.name("role", max_length=MAX_NAME_LENGTH),
            clients=tuple(
                kinds.name(str(n), max_length=MAX_NAME_LENGTH) for n in range(len(clients))
            ),
            connections=self.integer("connections", 1, MAX_CLIENTS_COUNT),
        )

    def run(self) -> Run:
        outcome = self.state("outcome")
        if not outcome.is_final:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label('outcome')!r} must be SUCCESS or CANCELED.",
            )
        return Run(
            calculation_id=self.text("calculation_id", max_length=MAX_ID_LENGTH),
            started_at=self.time("started_at"),
            ended_at=self.time("ended_at"),
            outcome=outcome,
            canceled_during=self.optional_state("canceled_during"),
            started_by=self.optional_attribution("started_by"),
            canceled_by=self.optional_attribution("canceled_by"),
        )

    def _get(self, name: str, types: tuple[type, ...], expected: str) -> Any:
        value = self.payload.get(name)
        # bool is an int in Python, never in JSON.
        if not isinstance(value, types) or isinstance(value, bool):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label(name)!r} must be {expected}, not {_json_type(value)}.",
            )
        return value

    def text(self, name: str, *, max_length: int, min_length: int = 1) -> str:
        """A string of printable characters, ``min_length`` to ``max_length`` long."""
        value: str = self._get(name, (str,), "a string")
        if not min_length <= len(value) <= max_length:
            size = f"at most {max_length}" if min_length == 0 else f"{min_length} to {max_length}"
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label(name)!r} must be {size} characters long, not {len(value)}.",
            )
        # Neither markup nor escape sequences are refused here: the clients show server
        # text as plain text. Control characters are, and lone surrogates (which UTF-8
        # cannot encode) with them.
        if not value.isprintable():
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, f"Field {self._label(name)!r} " + _UNPRINTABLE
            )
        return value

    def optional_text(self, name: str, *, max_length: int, min_length: int = 1) -> str | None:
        if self.payload.get(name) is None:
            return None
        return self.text(name, min_length=min_length, max_length=max_length)

    def name(self, name: str, *, max_length: int) -> str:
        """A lowercase name: a message type or an error code."""
        value = self.text(name, max_length=max_length)
        if not _NAME.fullmatch(value):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label(name)!r} must be made of a-z, 0-9 and _, "
                f"not {_preview(value)}.",
            )
        return value

    def boolean(self, name: str) -> bool:
        value = self.payload.get(name)
        if not isinstance(value, bool):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label(name)!r} must be true or false, not {_json_type(value)}.",
            )
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        value: int = self._get(name, (int,), "an integer")
        if not low <= value <= high:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label(name)!r} must be an integer from {low} to {high}, "
                f"not {_number(value)}.",
            )
        return value

    def number(
        self,
        name: str,
        low: float,
        high: float,
        *,
        low_open: bool = False,
        high_open: bool = False,
    ) -> float:
        """A finite number within bounds; open bounds are excluded."""
        value: int | float = self._get(name, (int, float), "a number")
        # Compared before any conversion: an int compares exactly with a float, whereas
        # float() of a 400-digit integer raises OverflowError. NaN fails every comparison.
        above = low < value if low_open else low <= value
        below = value < high if high_open else value <= high
        if not (above and below):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {self._label(name)!r} must be a number "
                f"{'above' if low_open else 'at least'} "
                f"{low:g} and {'below' if high_open else 'at most'} {high:g}, "
                f"not {_number(value)}.",
            )
        return float(value)


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _loads(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_JSON,
            f"The message is not valid JSON: {exc.msg} (at character {exc.pos}).",
        ) from None
    except ValueError:  # e.g. an integer longer than Python converts
        raise ProtocolError(ErrorCode.INVALID_JSON, "The message is not valid JSON.") from None
    except RecursionError:
        raise ProtocolError(ErrorCode.INVALID_JSON, "The message is nested too deeply.") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _number(value: float) -> str:
    """A number for an error sentence, short however large it is."""
    if isinstance(value, float):
        return f"{value:g}"
    if -(10**15) < value < 10**15:
        return str(value)
    try:
        return f"an integer of {len(str(abs(value)))} digits"
    except ValueError:  # longer than Python converts to text
        return "a huge integer"


def _preview(text: str, limit: int = 40) -> str:
    """Quote a peer's string for an error sentence, cut short if long.

    JSON's escapes (ASCII only) make any control character or lone surrogate harmless.
    """
    return json.dumps(text if len(text) <= limit else text[:limit] + "...")
