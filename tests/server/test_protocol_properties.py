"""Property-based: whatever arrives, the decoders return a message or the protocol's error."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from progress_server.protocol import (
    ProtocolError,
    Request,
    ServerMessage,
    decode_request,
    decode_server_message,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
objects_with_fields = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["start", "cancel", "status", "x"]) | json_values,
        "request_id": st.text(max_size=80) | json_values,
        "type": st.sampled_from(["hello", "state", "ack", "error", "clients"]) | json_values,
        "state": st.sampled_from(["IDLE", "SUCCESS"]) | json_values,
        "seq": json_values,
        "count": json_values,
        "changed_at": json_values,
        "step_seconds": json_values,
        "calculation_id": json_values,
    },
)
frames = st.text() | st.binary() | json_values.map(json.dumps) | objects_with_fields.map(json.dumps)


@settings(max_examples=300, deadline=None)
@given(frames)
def test_decode_request_returns_a_request_or_a_protocol_error(data: str | bytes) -> None:
    """Never any other exception, whatever the client sends."""
    try:
        decoded = decode_request(data)
    except ProtocolError as exc:
        assert exc.message
    else:
        assert isinstance(decoded, Request)
        assert decoded.action in ("start", "cancel", "status")
        assert decoded.request_id is None or len(decoded.request_id) <= 64


@settings(max_examples=300, deadline=None)
@given(frames)
def test_decode_server_message_returns_a_message_or_a_protocol_error(data: str | bytes) -> None:
    """A client never crashes on what a (broken) server sends."""
    try:
        decoded = decode_server_message(data)
    except ProtocolError as exc:
        assert exc.message
    else:
        assert isinstance(decoded, ServerMessage)
