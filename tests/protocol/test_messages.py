"""The protocol v1 codec, without sockets."""

from __future__ import annotations

import json

import pytest

from progress_protocol.messages import (
    MAX_CHANGED_AT,
    MAX_CLIENTS_COUNT,
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_ID_LENGTH,
    MAX_PRESENCE_PEOPLE,
    MAX_PROTOCOL_VERSION,
    MAX_SEQ,
    MAX_SERVER_NAME_LENGTH,
    MAX_STEP_SECONDS,
    Ack,
    Clients,
    Error,
    ErrorCode,
    Hello,
    History,
    Person,
    Presence,
    ProtocolError,
    Request,
    StateMessage,
    Store,
    Unknown,
    clean_name,
    decode_request,
    decode_server_message,
    encode,
    encode_request,
)
from progress_protocol.states import Attribution, Run, State, StateSnapshot

SNAPSHOT = StateSnapshot(
    state=State.IN_PROGRESS,
    calculation_id="abc123",
    seq=7,
    changed_at=1_700_000_000.25,
    step_seconds=2.0,
)
BOB = Attribution(client_id="c1", name="bob@desk")
CANCELED = StateSnapshot(
    state=State.CANCELED,
    calculation_id="abc123",
    seq=8,
    changed_at=1_700_000_003.0,
    step_seconds=2.0,
    started_at=1_700_000_000.0,
    canceled_during=State.IN_PROGRESS,
    by=BOB,
    started_by=Attribution(client_id=None, name="http 127.0.0.1"),
)
RUN = Run(
    calculation_id="abc123",
    started_at=1_700_000_000.0,
    ended_at=1_700_000_003.0,
    outcome=State.CANCELED,
    canceled_during=State.IN_PROGRESS,
    started_by=Attribution(client_id=None, name="http 127.0.0.1"),
    canceled_by=BOB,
)


@pytest.mark.parametrize("action", ["start", "cancel", "status", "history"])
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
        # A lone surrogate, escaped in the JSON: no reply could echo it.
        (
            '{"action": "start", "request_id": "\\ud800"}',
            ErrorCode.INVALID_MESSAGE,
            "printable",
            None,
        ),
        (
            '{"action": "start", "request_id": "a\\u001b[2Jb"}',
            ErrorCode.INVALID_MESSAGE,
            "printable",
            None,
        ),
        (
            '{"action": "start", "request_id": "line\\r"}',
            ErrorCode.INVALID_MESSAGE,
            "printable",
            None,
        ),
        (
            '{"action": "st\\udfffart", "request_id": "q"}',
            ErrorCode.INVALID_MESSAGE,
            "printable",
            "q",
        ),
        ('{"action": "\\u0000", "request_id": "q"}', ErrorCode.INVALID_MESSAGE, "printable", "q"),
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


def test_a_request_id_with_a_lone_surrogate_starts_nothing() -> None:
    """The decoder refuses it before any action is taken, and its error can be sent."""
    with pytest.raises(ProtocolError) as raised:
        decode_request('{"action": "start", "request_id": "\\ud800"}')
    error = raised.value.to_error()
    assert error.request_id is None
    encode(error).encode("utf-8")  # the reply is valid UTF-8


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
        "name": None,
        "role": None,
        "commands": None,
    }
    hello = Hello("s/1", "c1", name="bob", role="viewer", commands=())
    assert json.loads(encode(hello)) | {"type": "hello"} == {
        "type": "hello",
        "protocol": 1,
        "server": "s/1",
        "client_id": "c1",
        "name": "bob",
        "role": "viewer",
        "commands": [],
    }
    people = (Person("alice", "operator", ("ctl", "tui"), 2), Person(None, "viewer", ("other",), 3))
    assert json.loads(encode(Presence(people, total=2, connections=5))) == {
        "type": "presence",
        "total": 2,
        "connections": 5,
        "people": [
            {"name": "alice", "role": "operator", "clients": ["ctl", "tui"], "connections": 2},
            {"name": None, "role": "viewer", "clients": ["other"], "connections": 3},
        ],
    }
    assert json.loads(encode(StateMessage(SNAPSHOT))) == {
        "type": "state",
        "state": "IN_PROGRESS",
        "calculation_id": "abc123",
        "seq": 7,
        "changed_at": 1_700_000_000.25,
        "step_seconds": 2.0,
        "started_at": None,
        "canceled_during": None,
        "by": None,
        "started_by": None,
    }
    assert json.loads(encode(StateMessage(CANCELED))) == {
        "type": "state",
        "state": "CANCELED",
        "calculation_id": "abc123",
        "seq": 8,
        "changed_at": 1_700_000_003.0,
        "step_seconds": 2.0,
        "started_at": 1_700_000_000.0,
        "canceled_during": "IN_PROGRESS",
        "by": {"client_id": "c1", "name": "bob@desk"},
        "started_by": {"client_id": None, "name": "http 127.0.0.1"},
    }
    assert json.loads(encode(History((RUN,)))) == {
        "type": "history",
        "runs": [
            {
                "calculation_id": "abc123",
                "started_at": 1_700_000_000.0,
                "ended_at": 1_700_000_003.0,
                "outcome": "CANCELED",
                "canceled_during": "IN_PROGRESS",
                "started_by": {"client_id": None, "name": "http 127.0.0.1"},
                "canceled_by": {"client_id": "c1", "name": "bob@desk"},
            }
        ],
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
        StateMessage(CANCELED),
        History(()),
        History((RUN, RUN)),
    ],
)
def test_server_messages_round_trip(message: object) -> None:
    """What the server encodes, the clients decode to an equal message."""
    assert decode_server_message(encode(message)) == message  # type: ignore[arg-type]


def test_decode_server_message_ignores_unknown_fields() -> None:
    """A newer server may add fields."""
    assert decode_server_message('{"type": "clients", "count": 2, "new": 1}') == Clients(2)


def test_an_unknown_message_type_is_not_an_error() -> None:
    """A newer server may add message types: they decode to Unknown, for clients to skip."""
    assert decode_server_message('{"type": "weather", "states": [1, 2]}') == Unknown("weather")
    assert decode_server_message('{"type": "weather"}') == Unknown("weather")


def state(**fields: object) -> str:
    """A state message with some fields changed."""
    payload: dict[str, object] = {
        "type": "state",
        "state": "IN_PROGRESS",
        "calculation_id": "abc123",
        "seq": 7,
        "changed_at": 1_700_000_000.25,
        "step_seconds": 2.0,
    }
    return json.dumps({**payload, **fields})


HUGE = int("9" * 400)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        # Numbers out of range: none of these may reach float(), time or a division.
        (state(changed_at=HUGE), "changed_at"),
        (state(changed_at=1e300), "changed_at"),
        (state(changed_at=-1e18), "changed_at"),
        (state(changed_at=-0.5), "changed_at"),
        (state(changed_at=MAX_CHANGED_AT), "changed_at"),
        (state(step_seconds=0), "step_seconds"),
        (state(step_seconds=-2.0), "step_seconds"),
        (state(step_seconds=MAX_STEP_SECONDS + 1), "step_seconds"),
        (state(step_seconds=HUGE), "step_seconds"),
        (state(seq=-1), "seq"),
        (state(seq=MAX_SEQ + 1), "seq"),
        (state(seq=HUGE), "seq"),
        (state(seq=True), "seq"),
        (state(seq=7.0), "seq"),
        (json.dumps({"type": "clients", "count": -1}), "count"),
        (json.dumps({"type": "clients", "count": MAX_CLIENTS_COUNT + 1}), "count"),
        (json.dumps({"type": "hello", "server": "s", "client_id": "c", "protocol": 0}), "protocol"),
        (
            json.dumps(
                {"type": "hello", "server": "s", "client_id": "c", "protocol": HUGE},
            ),
            "protocol",
        ),
        # Strings: bounded lengths, printable, names of a-z, 0-9 and _.
        (state(calculation_id=""), "calculation_id"),
        (state(calculation_id="x" * (MAX_ID_LENGTH + 1)), "calculation_id"),
        (state(calculation_id="\x1b[2J\x1b[31mred"), "calculation_id"),
        (state(calculation_id="a\rb"), "calculation_id"),
        (state(calculation_id="\ud800"), "calculation_id"),
        (state(calculation_id="\u202eevil"), "calculation_id"),  # a bidi override
        (
            json.dumps({"type": "hello", "server": "", "client_id": "c", "protocol": 1}),
            "server",
        ),
        (
            json.dumps(
                {
                    "type": "hello",
                    "server": "s" * (MAX_SERVER_NAME_LENGTH + 1),
                    "client_id": "c",
                    "protocol": 1,
                }
            ),
            "server",
        ),
        (
            json.dumps(
                {"type": "hello", "server": "s\x1b]0;t\x07", "client_id": "c", "protocol": 1}
            ),
            "server",
        ),
        (
            json.dumps({"type": "hello", "server": "s", "client_id": "c\n", "protocol": 1}),
            "client_id",
        ),
        (json.dumps({"type": "error", "code": "Not Running", "message": "No."}), "code"),
        (json.dumps({"type": "error", "code": "", "message": "No."}), "code"),
        (json.dumps({"type": "error", "code": "x" * 65, "message": "No."}), "code"),
        (json.dumps({"type": "error", "code": "x", "message": ""}), "message"),
        (
            json.dumps(
                {"type": "error", "code": "x", "message": "m" * (MAX_ERROR_MESSAGE_LENGTH + 1)}
            ),
            "message",
        ),
        (json.dumps({"type": "error", "code": "x", "message": "one\rtwo"}), "message"),
        (
            json.dumps({"type": "error", "code": "x", "message": "m", "request_id": "r" * 65}),
            "request_id",
        ),
        (
            json.dumps(
                {"type": "ack", "action": "start", "calculation_id": "c", "request_id": "\t"}
            ),
            "request_id",
        ),
        (json.dumps({"type": "Hello"}), "type"),
        (json.dumps({"type": "x" * 65}), "type"),
        (json.dumps({"type": 3}), "type"),
    ],
)
def test_out_of_bounds_server_messages_are_invalid(data: str, field: str) -> None:
    """Each value outside the protocol's bounds is refused with a sentence naming it."""
    with pytest.raises(ProtocolError) as raised:
        decode_server_message(data)
    assert raised.value.code is ErrorCode.INVALID_MESSAGE
    assert repr(field) in raised.value.message
    assert raised.value.message.endswith(".")
    assert len(raised.value.message) < 200
    assert raised.value.message.isprintable()


def test_a_400_digit_integer_is_named_not_printed() -> None:
    """The sentence stays short however long the number is."""
    with pytest.raises(ProtocolError) as raised:
        decode_server_message(state(changed_at=HUGE))
    assert raised.value.message == (
        "Field 'changed_at' must be a number at least 0 and below 1e+11,"
        " not an integer of 400 digits."
    )


def hello(**fields: object) -> str:
    return json.dumps({"type": "hello", "server": "s", "client_id": "c", "protocol": 1} | fields)


def error(**fields: object) -> str:
    return json.dumps({"type": "error", "code": "x", "message": "m"} | fields)


@pytest.mark.parametrize(
    ("valid", "invalid"),
    [
        # Each bound is in, the next value out.
        (state(changed_at=0), state(changed_at=-0.001)),
        (state(changed_at=MAX_CHANGED_AT - 1), state(changed_at=MAX_CHANGED_AT)),
        (state(step_seconds=MAX_STEP_SECONDS), state(step_seconds=MAX_STEP_SECONDS + 0.001)),
        (state(step_seconds=0.001), state(step_seconds=0.0)),
        (state(seq=0), state(seq=-1)),
        (state(seq=MAX_SEQ), state(seq=MAX_SEQ + 1)),
        (state(calculation_id="x"), state(calculation_id="")),
        (state(calculation_id="x" * MAX_ID_LENGTH), state(calculation_id="x" * 65)),
        # Markup is text like any other, for the clients to show as such; control
        # characters are not.
        (state(calculation_id="[/]"), state(calculation_id="[/]\x1b")),
        (state(calculation_id="[@click=app.quit]X[/]"), state(calculation_id="X\x9b")),
        (state(calculation_id="café ✔ 日本"), state(calculation_id="café\u200f")),
        (
            json.dumps({"type": "clients", "count": MAX_CLIENTS_COUNT}),
            json.dumps({"type": "clients", "count": MAX_CLIENTS_COUNT + 1}),
        ),
        (hello(protocol=MAX_PROTOCOL_VERSION), hello(protocol=MAX_PROTOCOL_VERSION + 1)),
        (hello(server="s" * MAX_SERVER_NAME_LENGTH), hello(server="s" * 129)),
        (error(request_id=""), error(request_id="\n")),
        (error(request_id="r" * 64), error(request_id="r" * 65)),
        (error(code="a_z_0_9"), error(code="a-z")),
        (error(message="m" * MAX_ERROR_MESSAGE_LENGTH), error(message="m" * 1025)),
    ],
)
def test_the_bounds_are_exact(valid: str, invalid: str) -> None:
    """A value at a bound is accepted, the next one refused."""
    decode_server_message(valid)
    with pytest.raises(ProtocolError):
        decode_server_message(invalid)


@pytest.mark.parametrize(
    "data",
    [
        "nope",
        "[]",
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


def test_a_state_from_an_older_server_reads_as_null() -> None:
    """started_at, canceled_during and by came later: their absence means null."""
    message = decode_server_message(
        '{"type": "state", "state": "STARTING", "calculation_id": "a", "seq": 1,'
        ' "changed_at": 1.5, "step_seconds": 2}'
    )
    assert isinstance(message, StateMessage)
    assert message.snapshot.by is None and message.snapshot.started_at is None


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "history", "runs": {}}',
        '{"type": "history", "runs": [1]}',
        '{"type": "history", "runs": [{"calculation_id": "a"}]}',
        '{"type": "history", "runs": ' + json.dumps([{}] * 101) + "}",
        json.dumps(
            {
                "type": "history",
                "runs": [
                    {**json.loads(encode(History((RUN,))))["runs"][0], "outcome": "IN_PROGRESS"}
                ],
            }
        ),
        json.dumps({**json.loads(encode(StateMessage(CANCELED))), "by": "bob"}),
        json.dumps({**json.loads(encode(StateMessage(CANCELED))), "by": {"name": "\x1b[2J"}}),
        json.dumps({**json.loads(encode(StateMessage(CANCELED))), "by": {"name": "x" * 65}}),
        json.dumps({**json.loads(encode(StateMessage(CANCELED))), "canceled_during": "LATER"}),
    ],
)
def test_bad_history_and_attribution_raise_protocol_errors(text: str) -> None:
    with pytest.raises(ProtocolError):
        decode_server_message(text)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("alice@laptop", "alice@laptop"),
        ("  bob  ", "bob"),
        ("eve\x1b[31m\r\nx", "eve[31mx"),
        ("z" * 100, "z" * 64),
        ("\u202eevil", "evil"),
        ("Zoë@bücher", "Zoë@bücher"),
    ],
)
def test_clean_name(raw: str, clean: str) -> None:
    """Names lose what is not printable and are cut at 64 characters."""
    assert clean_name(raw) == clean


def presence(**fields: object) -> str:
    person = {"name": "alice", "role": "operator", "clients": ["tui"], "connections": 1}
    payload = {"type": "presence", "total": 1, "connections": 1, "people": [person]}
    return json.dumps(payload | fields)


def test_presence_round_trips() -> None:
    """A presence message decodes to what was encoded: names (or none), roles, kinds
    of client, counts."""
    people = (Person("alice", "operator", ("ctl", "tui"), 2), Person(None, "viewer", ("other",), 3))
    message = Presence(people, total=7, connections=9)
    assert decode_server_message(encode(message)) == message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (presence(people=[{}] * (MAX_PRESENCE_PEOPLE + 1)), "people"),
        (presence(people="alice"), "people"),
        (presence(total=0), "total"),  # fewer than it lists
        (presence(connections=-1), "connections"),
        (
            presence(
                people=[{"name": "a\x1b[2J", "role": "operator", "clients": [], "connections": 1}]
            ),
            "name",
        ),
        (presence(people=[{"name": "a", "role": "Boss", "clients": [], "connections": 1}]), "role"),
        (
            presence(people=[{"name": "a", "role": "viewer", "clients": "tui", "connections": 1}]),
            "clients",
        ),
        (
            presence(
                people=[{"name": "a", "role": "viewer", "clients": ["tui"] * 9, "connections": 1}]
            ),
            "clients",
        ),
        (
            presence(people=[{"name": "a", "role": "viewer", "clients": [], "connections": 0}]),
            "connections",
        ),
    ],
)
def test_a_hostile_presence_is_refused(data: str, field: str) -> None:
    """A presence message out of bounds, or holding control characters, is refused
    with a sentence naming the field: a hostile server cannot fill a screen or draw."""
    with pytest.raises(ProtocolError) as raised:
        decode_server_message(data)
    assert field in raised.value.message


def test_hello_says_who_the_client_is() -> None:
    """hello's name, role and commands decode; commands this client does not know are
    skipped, and an older server's hello (without them) reads as None."""
    decoded = decode_server_message(hello(name="bob", role="viewer", commands=["cancel", "fly"]))
    assert decoded == Hello("s", "c", name="bob", role="viewer", commands=("cancel",))
    assert decode_server_message(hello()) == Hello("s", "c")
    for bad in (hello(role="Boss"), hello(commands="start"), hello(name="b\x07")):
        with pytest.raises(ProtocolError):
            decode_server_message(bad)


def test_store_round_trips_and_must_be_a_boolean() -> None:
    """store says whether the server reaches its store: true or false, nothing else."""
    for reachable in (True, False):
        assert decode_server_message(encode(Store(reachable))) == Store(reachable)
    assert json.loads(encode(Store(False))) == {"type": "store", "reachable": False}
    for bad in (0, "false", None):
        with pytest.raises(ProtocolError) as raised:
            decode_server_message(json.dumps({"type": "store", "reachable": bad}))
        assert "reachable" in raised.value.message
