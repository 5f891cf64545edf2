"""The protocol v1 codec, without sockets."""

from __future__ import annotations

import json

import pytest

from progress_server.calculation import State, StateSnapshot
from progress_server.protocol import (
    Ack,
    Clients,
    Error,
    ErrorCode,
    Hello,
    ProtocolError,
    Request,
    StateMessage,
    decode_request,
    decode_server_message,
    encode,
    encode_request,
)

SNAPSHOT = StateSnapshot(
    state=State.IN_PROGRESS,
    calculation_id="abc123",
    seq=7,
    changed_at=1_700_000_000.25,
    step_seconds=2.0,
)


@pytest.mark.parametrize("action", ["start", "cancel", "status"])
def test_decode_each_action(action: str) -> None:
    """Each action decodes, with and without a request_id."""
    assert decode_request(json.dumps({"action": action})) == Request(action)  # type: ignore[arg-type]
    decoded = decode_request(json.dumps({"action": action, "request_id": "r-1"}))
    assert decoded == Request(action, "r-1")  # type: ignore[arg-type]


def test_unknown_fields_are_ignored() -> None:
    """Extra fields do not make a request invalid."""
    assert decode_request('{"action": "start", "please": true}') == Request("start")


def test_request_round_trip() -> None:
    """What the clients encode, the server decodes."""
    request = Request("cancel", "x" * 64)
    assert decode_request(encode_request(request)) == request


@pytest.mark.parametrize(
    ("data", "code", "words", "request_id"),
    [
        ("{not json", ErrorCode.INVALID_JSON, "not valid JSON", None),
        ("", ErrorCode.INVALID_JSON, "not valid JSON", None),
        ("1" * 5000, ErrorCode.INVALID_JSON, "not valid JSON", None),
        ("[" * 100_000, ErrorCode.INVALID_JSON, "", None),
        ('["start"]', ErrorCode.INVALID_MESSAGE, "must be a JSON object, not an array", None),
        ('"start"', ErrorCode.INVALID_MESSAGE, "must be a JSON object, not a string", None),
        ("{}", ErrorCode.INVALID_MESSAGE, 'needs an "action" field', None),
        ('{"action": 3}', ErrorCode.INVALID_MESSAGE, "action must be a string, not a number", None),
        ('{"action": "fly", "request_id": "q"}', ErrorCode.UNKNOWN_ACTION, '"fly"', "q"),
        ('{"action": "start", "request_id": 5}', ErrorCode.INVALID_MESSAGE, "request_id", None),
        (
            json.dumps({"action": "start", "request_id": "x" * 65}),
            ErrorCode.INVALID_MESSAGE,
            "at most 64 characters",
            None,
        ),
        (b'{"action": "start"}', ErrorCode.UNSUPPORTED_FRAME, "Binary frames", None),
    ],
)
def test_bad_requests_raise_protocol_errors(
    data: str | bytes, code: ErrorCode, words: str, request_id: str | None
) -> None:
    """Each bad request gets its code, a sentence saying what is wrong, and its request_id."""
    with pytest.raises(ProtocolError) as raised:
        decode_request(data)
    assert raised.value.code == code
    assert words in raised.value.message
    assert raised.value.message.endswith(".")
    assert raised.value.request_id == request_id


def test_long_unknown_action_is_cut_short_in_the_sentence() -> None:
    """The error quotes at most 40 characters of what the client sent."""
    with pytest.raises(ProtocolError) as raised:
        decode_request(json.dumps({"action": "a" * 1000}))
    assert len(raised.value.message) < 120


def test_encode_server_messages() -> None:
    """Each server message encodes to the documented JSON object."""
    assert json.loads(encode(Hello(server="s/1", client_id="c1"))) == {
        "type": "hello",
        "protocol": 1,
        "server": "s/1",
        "client_id": "c1",
    }
    assert json.loads(encode(StateMessage(SNAPSHOT))) == {
        "type": "state",
        "state": "IN_PROGRESS",
        "calculation_id": "abc123",
        "seq": 7,
        "changed_at": 1_700_000_000.25,
        "step_seconds": 2.0,
    }
    assert json.loads(encode(Ack(action="start", calculation_id="abc", request_id="r"))) == {
        "type": "ack",
        "action": "start",
        "calculation_id": "abc",
        "request_id": "r",
    }
    assert json.loads(encode(Error(code="not_running", message="No."))) == {
        "type": "error",
        "code": "not_running",
        "message": "No.",
        "request_id": None,
    }
    assert json.loads(encode(Clients(count=3))) == {"type": "clients", "count": 3}


@pytest.mark.parametrize(
    "message",
    [
        Hello(server="progress-server/1.0", client_id="c1"),
        StateMessage(SNAPSHOT),
        StateMessage(StateSnapshot(State.IDLE, None, 0, 1.0, 0.05)),
        Ack(action="cancel", calculation_id="abc", request_id=None),
        Error(code="already_running", message="Busy.", request_id="r1"),
        Clients(count=0),
    ],
)
def test_server_messages_round_trip(message: object) -> None:
    """What the server encodes, the clients decode to an equal message."""
    assert decode_server_message(encode(message)) == message  # type: ignore[arg-type]


def test_decode_server_message_ignores_unknown_fields() -> None:
    """A newer server may add fields."""
    assert decode_server_message('{"type": "clients", "count": 2, "new": 1}') == Clients(2)


@pytest.mark.parametrize(
    "data",
    [
        "nope",
        "[]",
        '{"type": "weather"}',
        '{"type": "clients"}',
        '{"type": "clients", "count": true}',
        '{"type": "clients", "count": "2"}',
        '{"type": "state", "state": "ASLEEP", "calculation_id": null, "seq": 1,'
        ' "changed_at": 1, "step_seconds": 1}',
        '{"type": "state", "state": "IDLE", "calculation_id": null, "seq": 1,'
        ' "changed_at": NaN, "step_seconds": 1}',
        '{"type": "ack", "action": "status", "calculation_id": "x"}',
        b"\x00",
    ],
)
def test_bad_server_messages_raise_protocol_errors(data: str | bytes) -> None:
    """A client never crashes on a malformed server message: it gets a ProtocolError."""
    with pytest.raises(ProtocolError):
        decode_server_message(data)
