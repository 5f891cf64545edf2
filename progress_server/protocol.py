"""Protocol v1: the JSON messages between the server and its clients, and their codec.

Pure functions and dataclasses, no I/O: the server and every client of this project
(``progress-tui``, ``progress-ctl``) encode and decode through this module alone.
docs/protocol.md describes every message with an example.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from .calculation import State, StateSnapshot

__all__ = [
    "MAX_REQUEST_ID_LENGTH",
    "PROTOCOL_VERSION",
    "Ack",
    "Action",
    "Clients",
    "Error",
    "ErrorCode",
    "Hello",
    "ProtocolError",
    "Request",
    "ServerMessage",
    "StateMessage",
    "decode_request",
    "decode_server_message",
    "encode",
    "encode_request",
]

PROTOCOL_VERSION = 1
MAX_REQUEST_ID_LENGTH = 64

Action: TypeAlias = Literal["start", "cancel", "status"]
ACTIONS: tuple[str, ...] = get_args(Action)


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` message."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_ACTION = "unknown_action"
    ALREADY_RUNNING = "already_running"
    NOT_RUNNING = "not_running"
    UNSUPPORTED_FRAME = "unsupported_frame"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"


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
    action = payload.get("action")
    if action is None:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            'A message needs an "action" field: "start", "cancel" or "status".',
            request_id=request_id,
        )
    if not isinstance(action, str):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"action must be a string, not {_json_type(action)}.",
            request_id=request_id,
        )
    if action not in ACTIONS:
        raise ProtocolError(
            ErrorCode.UNKNOWN_ACTION,
            f'Unknown action {_preview(action)}; use "start", "cancel" or "status".',
            request_id=request_id,
        )
    return Request(action=action, request_id=request_id)  # type: ignore[arg-type]


# Server to client.


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message on every connection."""

    server: str
    client_id: str
    protocol: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class StateMessage:
    """The calculation's state: after hello, on every change, and for ``status``."""

    snapshot: StateSnapshot


@dataclass(frozen=True, slots=True)
class Ack:
    """An accepted action; the state broadcast follows."""

    action: Literal["start", "cancel"]
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


ServerMessage: TypeAlias = Hello | StateMessage | Ack | Error | Clients


def to_dict(message: ServerMessage) -> dict[str, Any]:
    """The JSON object of a server message, as sent on the wire and by the HTTP API."""
    match message:
        case Hello(server=server, client_id=client_id, protocol=protocol):
            return {"type": "hello", "protocol": protocol, "server": server, "client_id": client_id}
        case StateMessage(snapshot=snapshot):
            return {
                "type": "state",
                "state": snapshot.state.value,
                "calculation_id": snapshot.calculation_id,
                "seq": snapshot.seq,
                "changed_at": snapshot.changed_at,
                "step_seconds": snapshot.step_seconds,
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
    raise TypeError(f"not a server message: {message!r}")  # pragma: no cover


def encode(message: ServerMessage) -> str:
    """Encode a server message as the text of one frame."""
    return _dumps(to_dict(message))


def decode_server_message(data: str | bytes) -> ServerMessage:
    """Read one server message (the clients' side of the codec).

    Unknown extra fields are ignored, so a newer server can add some.

    Raises:
        ProtocolError: If the message is not a valid protocol v1 server message.
    """
    if not isinstance(data, str):
        raise ProtocolError(ErrorCode.UNSUPPORTED_FRAME, "The server sent a binary frame.")
    payload = _loads(data)
    if not isinstance(payload, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "A server message must be a JSON object.")
    fields = _Fields(payload)
    kind = fields.text("type")
    match kind:
        case "hello":
            return Hello(
                server=fields.text("server"),
                client_id=fields.text("client_id"),
                protocol=fields.integer("protocol"),
            )
        case "state":
            state_name = fields.text("state")
            try:
                state = State(state_name)
            except ValueError:
                raise ProtocolError(
                    ErrorCode.INVALID_MESSAGE, f"Unknown state {_preview(state_name)}."
                ) from None
            return StateMessage(
                StateSnapshot(
                    state=state,
                    calculation_id=fields.optional_text("calculation_id"),
                    seq=fields.integer("seq"),
                    changed_at=fields.number("changed_at"),
                    step_seconds=fields.number("step_seconds"),
                )
            )
        case "ack":
            action = fields.text("action")
            if action not in ("start", "cancel"):
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"Unknown ack {_preview(action)}.")
            return Ack(
                action=action,  # type: ignore[arg-type]
                calculation_id=fields.text("calculation_id"),
                request_id=fields.optional_text("request_id"),
            )
        case "error":
            return Error(
                code=fields.text("code"),
                message=fields.text("message"),
                request_id=fields.optional_text("request_id"),
            )
        case "clients":
            return Clients(count=fields.integer("count"))
    raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"Unknown message type {_preview(kind)}.")


class _Fields:
    """Typed access to the fields of a decoded server message."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload

    def _get(self, name: str, types: tuple[type, ...], expected: str) -> Any:
        value = self.payload.get(name)
        # bool is an int in Python, never in JSON.
        if not isinstance(value, types) or isinstance(value, bool):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"Field {name!r} must be {expected}, not {_json_type(value)}.",
            )
        return value

    def text(self, name: str) -> str:
        return self._get(name, (str,), "a string")  # type: ignore[no-any-return]

    def optional_text(self, name: str) -> str | None:
        if self.payload.get(name) is None:
            return None
        return self.text(name)

    def integer(self, name: str) -> int:
        return self._get(name, (int,), "an integer")  # type: ignore[no-any-return]

    def number(self, name: str) -> float:
        value = float(self._get(name, (int, float), "a number"))
        if not math.isfinite(value):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"Field {name!r} must be finite.")
        return value


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _loads(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_JSON, f"The message is not valid JSON: {exc.msg} at {exc.pos}."
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


def _preview(text: str, limit: int = 40) -> str:
    """Quote a client's string for an error sentence, cut short if long."""
    return json.dumps(text if len(text) <= limit else text[:limit] + "...")
