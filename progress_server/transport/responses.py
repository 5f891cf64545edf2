"""The HTTP responses a connection writes: JSON bodies, errors in the protocol's shape.

Both the connection (a handshake too large, a server shutting down, a failure while
answering) and the HTTP API answer with these, so they live below both: the transport
never imports an endpoint.
"""

from __future__ import annotations

import http
import json
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Response

from progress_protocol.messages import Error, ErrorCode, to_dict

__all__ = ["error_response", "json_response"]


def json_response(
    status: http.HTTPStatus, payload: dict[str, Any], *, headers: dict[str, str] | None = None
) -> Response:
    """An HTTP response with a JSON body; the connection closes after it."""
    body = (json.dumps(payload) + "\n").encode()
    response_headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    for name, value in (headers or {}).items():
        response_headers[name] = value
    return Response(status.value, status.phrase, response_headers, body)


def error_response(
    status: http.HTTPStatus,
    code: ErrorCode,
    message: str,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    """An HTTP response whose body is the protocol's ``error`` object."""
    return json_response(status, to_dict(Error(code=code, message=message)), headers=headers)
