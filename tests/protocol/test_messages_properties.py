"""Property-based: whatever arrives, the decoders return a message or the protocol's error."""

from __future__ import annotations

import json
import math
import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from progress_protocol.messages import (
    MAX_CHANGED_AT,
    MAX_CLIENTS_COUNT,
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PROTOCOL_VERSION,
    MAX_REQUEST_ID_LENGTH,
    MAX_SEQ,
    MAX_SERVER_NAME_LENGTH,
    MAX_STEP_SECONDS,
    Ack,
    Clients,
    Error,
    Hello,
    ProtocolError,
    Request,
    ServerMessage,
    StateMessage,
    Unknown,
    decode_request,
    decode_server_message,
    encode,
)

#: Any code point, lone surrogates (category Cs) and control characters included.
any_text = st.text(alphabet=st.characters(exclude_categories=()))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children) | st.dictionaries(any_text, children),
    max_leaves=20,
)
#: What a hostile peer would try: each bound's neighbours, overflows, markup, escapes.
hostile_values = (
    json_values
    | st.integers(min_value=10**300, max_value=10**400)
    | st.integers(min_value=-(10**400), max_value=-(10**300))
    | st.sampled_from(
        [
            0,
            -1,
            0.0,
            -0.0,
            1,
            1e300,
            -1e18,
            1e11,
            2**31,
            2**31 + 1,
            2**53 - 1,
            2**53,
            86_400,
            86_400.0001,
            math.nan,
            math.inf,
            -math.inf,
            "NaN",
            "Infinity",
            "[/]",
            "[@click=app.quit]X[/]",
            "[b]bold",
            "\x1b[2J\x1b[31mred",
            "\x1b]0;title\x07",
            "line\rover",
            "\ud800",
            "a\udfffb",
            "\u202eevil",
            "",
            "x" * 65,
            "x" * 129,
            "x" * 1025,
            "x" * 100_000,
        ]
    )
)
objects_with_fields = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["start", "cancel", "status", "x"]) | hostile_values,
        "request_id": any_text.filter(lambda text: len(text) <= 80) | hostile_values,
        "type": st.sampled_from(["hello", "state", "ack", "error", "clients", "history"])
        | hostile_values,
        "protocol": st.integers(min_value=-1, max_value=3) | hostile_values,
        "server": st.sampled_from(["progress-server/0.1.0"]) | hostile_values,
        "client_id": st.sampled_from(["c0ffee"]) | hostile_values,
        "state": st.sampled_from(["IDLE", "SUCCESS"]) | hostile_values,
        "seq": st.integers(min_value=-1, max_value=MAX_SEQ + 1) | hostile_values,
        "count": st.integers(min_value=-1, max_value=MAX_CLIENTS_COUNT + 1) | hostile_values,
        "changed_at": st.floats(min_value=-1, max_value=MAX_CHANGED_AT + 1) | hostile_values,
        "step_seconds": st.floats(min_value=-1, max_value=MAX_STEP_SECONDS + 1) | hostile_values,
        "calculation_id": st.sampled_from(["3b6188a98e7a", None]) | hostile_values,
        "code": st.sampled_from(["not_running"]) | hostile_values,
        "message": st.sampled_from(["No."]) | hostile_values,
    },
)
#: One valid message of each type, as a server sends them.
VALID_MESSAGES: list[dict[str, object]] = [
    {"type": "hello", "protocol": 1, "server": "progress-server/0.1.0", "client_id": "c0ffee"},
    {
        "type": "state",
        "state": "IN_PROGRESS",
        "calculation_id": "3b6188a98e7a",
        "seq": 7,
        "changed_at": 1_700_000_000.25,
        "step_seconds": 2.0,
    },
    {"type": "ack", "action": "start", "calculation_id": "3b6188a98e7a", "request_id": "r-1"},
    {"type": "error", "code": "not_running", "message": "No.", "request_id": "r-2"},
    {"type": "clients", "count": 3},
]
#: A valid message with some of its fields, often just one, made hostile.
tampered = st.sampled_from(VALID_MESSAGES).flatmap(
    lambda message: st.fixed_dictionaries(
        {name: st.just(value) | hostile_values for name, value in message.items()}
    )
)
#: JSON escapes lone surrogates and control characters; without ensure_ascii, they are raw.
frames = (
    any_text
    | st.binary()
    | json_values.map(json.dumps)
    | objects_with_fields.map(json.dumps)
    | objects_with_fields.map(lambda payload: json.dumps(payload, ensure_ascii=False))
    | tampered.map(json.dumps)
    | tampered.map(lambda payload: json.dumps(payload, ensure_ascii=False))
)


def sendable(text: str) -> None:
    """Fails if `text` cannot go in a text frame (a lone surrogate has no UTF-8)."""
    text.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(frames)
def test_decode_request_returns_a_request_or_a_protocol_error(data: str | bytes) -> None:
    """Never any other exception, whatever the client sends; the answer can always be sent."""
    try:
        decoded = decode_request(data)
    except ProtocolError as exc:
        assert exc.message
        sendable(encode(exc.to_error()))
    else:
        assert isinstance(decoded, Request)
        assert decoded.action in ("start", "cancel", "status")
        assert decoded.request_id is None or len(decoded.request_id) <= MAX_REQUEST_ID_LENGTH
        sendable(decoded.action)
        if decoded.request_id is not None:
            sendable(decoded.request_id)
        # The replies that echo the request_id: an ack, a refusal.
        sendable(encode(Ack("start", "3b6188a98e7a", decoded.request_id)))
        sendable(encode(Error("not_running", "No.", decoded.request_id)))


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"action": st.sampled_from(["start", "cancel", "status"]) | any_text},
        optional={"request_id": any_text},
    ).map(json.dumps)
)
def test_any_unicode_request_id_is_refused_or_can_be_echoed(data: str) -> None:
    """Arbitrary Unicode, surrogates included: a decoded request's strings encode to UTF-8."""
    try:
        decoded = decode_request(data)
    except ProtocolError as exc:
        sendable(encode(exc.to_error()))
    else:
        sendable(encode(Ack("cancel", "3b6188a98e7a", decoded.request_id)))
        sendable(encode(Error("already_running", "Busy.", decoded.request_id)))


def assert_text(text: str, low: int, high: int) -> None:
    assert low <= len(text) <= high
    assert text.isprintable()
    sendable(text)


def assert_within_bounds(message: ServerMessage | Unknown) -> None:
    """Every field of a decoded message is within the protocol's bounds."""
    match message:
        case Hello(server=server, client_id=client_id, protocol=protocol):
            assert_text(server, 1, MAX_SERVER_NAME_LENGTH)
            assert_text(client_id, 1, MAX_ID_LENGTH)
            assert type(protocol) is int and 1 <= protocol <= MAX_PROTOCOL_VERSION
        case StateMessage(snapshot=snapshot):
            assert type(snapshot.seq) is int and 0 <= snapshot.seq <= MAX_SEQ
            assert type(snapshot.changed_at) is float
            assert 0 <= snapshot.changed_at < MAX_CHANGED_AT
            assert type(snapshot.step_seconds) is float
            assert 0 < snapshot.step_seconds <= MAX_STEP_SECONDS
            if snapshot.calculation_id is not None:
                assert_text(snapshot.calculation_id, 1, MAX_ID_LENGTH)
            time.localtime(snapshot.changed_at)  # what progress-ctl does with it
        case Ack(calculation_id=calculation_id, request_id=request_id):
            assert_text(calculation_id, 1, MAX_ID_LENGTH)
            if request_id is not None:
                assert_text(request_id, 0, MAX_REQUEST_ID_LENGTH)
        case Error(code=code, message=text, request_id=request_id):
            assert re.fullmatch(rf"[a-z0-9_]{{1,{MAX_NAME_LENGTH}}}", code)
            assert_text(text, 1, MAX_ERROR_MESSAGE_LENGTH)
            if request_id is not None:
                assert_text(request_id, 0, MAX_REQUEST_ID_LENGTH)
        case Clients(count=count):
            assert type(count) is int and 0 <= count <= MAX_CLIENTS_COUNT
        case Unknown(type=kind):
            assert re.fullmatch(rf"[a-z0-9_]{{1,{MAX_NAME_LENGTH}}}", kind)
            assert kind not in ("hello", "state", "ack", "error", "clients")
        case _:
            raise AssertionError(f"not a message: {message!r}")


@settings(max_examples=300, deadline=None)
@given(frames)
def test_decode_server_message_returns_a_valid_message_or_a_protocol_error(
    data: str | bytes,
) -> None:
    """A client never crashes on what a (broken or hostile) server sends, and what it
    accepts is within the bounds."""
    try:
        decoded = decode_server_message(data)
    except ProtocolError as exc:
        assert exc.message
        assert exc.message.isprintable()  # safe to log and to show
        assert len(exc.message) < 200
    else:
        assert_within_bounds(decoded)
