"""What went wrong with an attempt, and its sentence, from the exceptions alone."""

from __future__ import annotations

import logging
import socket
import ssl

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus, InvalidURI
from websockets.http11 import Response

from progress_client.failures import (
    MAX_RETRY_AFTER,
    NOT_TLS,
    describe_failure,
    is_permanent,
    retry_after,
)
from progress_client.wording import REPLACEMENT
from tests.client.hostile import frame

URL = "ws://example.test:3003/progress"


def refused(
    status: int, body: bytes = b"", reason: str = "Refused", *, retry_after: str | None = None
) -> InvalidStatus:
    """A handshake refused with ``status``, its body and maybe a Retry-After."""
    headers = Headers() if retry_after is None else Headers({"Retry-After": retry_after})
    return InvalidStatus(Response(status, reason, headers, body))


@pytest.mark.parametrize("status", [200, 204, 400, 401, 403, 404, 410, 426, 431])
def test_a_no_is_for_good(status: int) -> None:
    """4xx but 408, 425 and 429, and a plain 2xx (an HTTP endpoint, not the WebSocket)."""
    assert is_permanent(refused(status))


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503])
def test_a_not_now_is_retried(status: int) -> None:
    assert not is_permanent(refused(status))


def test_a_bad_url_or_certificate_is_for_good_and_the_network_is_not() -> None:
    assert is_permanent(InvalidURI("x://", "not a WebSocket URI"))
    assert is_permanent(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    assert not is_permanent(ConnectionRefusedError())
    assert not is_permanent(TimeoutError())


@pytest.mark.parametrize(
    ("value", "wait"),
    [
        ("3", 3.0),
        (" 7 ", 7.0),
        ("100000", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("-1", None),
        ("1.5", None),
        ("1_0", None),
        ("9" * 11, None),
    ],
)
def test_retry_after_reads_plain_seconds_only(value: str, wait: float | None) -> None:
    """Digits only, at most MAX_RETRY_AFTER; anything else asks for nothing."""
    assert retry_after(refused(503, retry_after=value)) == wait


def test_retry_after_needs_one_header_on_a_refusal() -> None:
    twice = InvalidStatus(Response(503, "Full", Headers([("Retry-After", "1")] * 2), b""))
    assert retry_after(twice) is None
    assert retry_after(refused(503)) is None
    assert retry_after(ConnectionRefusedError()) is None
    assert MAX_RETRY_AFTER == 60.0


def test_a_missing_or_wrong_token_is_said_so() -> None:
    assert describe_failure(refused(401), URL) == (
        "the server needs a token (HTTP 401): use --token or PROGRESS_TOKEN"
    )
    assert describe_failure(refused(401), URL, token="t") == (
        "the server refused the token (HTTP 401)"
    )


def test_a_refusal_carries_the_servers_sentence_or_its_status_line() -> None:
    """The body's protocol error object, read by the bounded decoder; anything else
    (HTML, control characters) gives way to the status line, made printable."""
    body = frame(type="error", code="forbidden", message="Go away.").encode()
    assert describe_failure(refused(403, body), URL) == (
        "the server refused the connection (HTTP 403): Go away."
    )
    assert describe_failure(refused(404, b"<h1>Not Found</h1>", "Not Found"), URL) == (
        "the server refused the connection (HTTP 404 Not Found)"
    )
    hostile = frame(type="error", code="x", message="\x1b[2Jowned").encode()
    assert describe_failure(refused(403, hostile, "\x1b]0;x"), URL) == (
        f"the server refused the connection (HTTP 403 {REPLACEMENT}]0;x)"
    )


def test_an_http_endpoint_is_not_the_websocket() -> None:
    assert describe_failure(refused(200), URL) == (
        "the server answered HTTP 200 instead of opening a WebSocket: is the path in the "
        "URL the WebSocket endpoint (/progress)?"
    )


def test_network_failures_in_a_few_words() -> None:
    assert describe_failure(ConnectionRefusedError(), URL) == "connection refused"
    assert describe_failure(socket.gaierror(-2, "Name unknown"), URL) == (
        "cannot resolve example.test"
    )
    assert describe_failure(TimeoutError(), URL) == "timed out"
    assert describe_failure(OSError(113, "No route to host"), URL) == "no route to host"


def test_tls_mix_ups_say_which_way() -> None:
    """A wss:// URL reset by a plain port says so; a ws:// one is not about TLS."""
    secure = URL.replace("ws://", "wss://")
    assert describe_failure(ConnectionResetError(104, "Reset"), secure) == NOT_TLS
    assert describe_failure(ConnectionResetError(104, "Reset"), URL) == "reset"
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate"
    assert describe_failure(untrusted, secure) == (
        "the server's certificate is not trusted (self-signed certificate); see --cafile"
    )


def test_an_unexpected_failure_is_logged_and_described(caplog: pytest.LogCaptureFixture) -> None:
    """Its type and message in one line, and its traceback in the log."""
    with caplog.at_level(logging.WARNING, logger="progress_client.failures"):
        assert describe_failure(RuntimeError("odd\nthing"), URL) == "RuntimeError: odd thing"
    (record,) = caplog.records
    assert record.exc_info is not None
