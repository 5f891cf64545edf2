"""Who may connect: the shared token and the allowed browser origins. Pure functions."""

from __future__ import annotations

import hmac
import re
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers

__all__ = ["origin_allowed", "presented_token", "redact", "token_matches"]


def presented_token(headers: Headers, target: str) -> str | None:
    """The token a request presents: ``Authorization: Bearer X``, else ``?token=X``.

    Browsers cannot set headers on a WebSocket handshake, hence the query parameter.
    """
    for value in headers.get_all("Authorization"):
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    tokens = parse_qs(urlsplit(target).query).get("token")
    return tokens[0] if tokens else None


def token_matches(expected: str, presented: str | None) -> bool:
    """Compare in constant time, so that the time taken tells nothing of the token."""
    return hmac.compare_digest(expected.encode(), (presented or "").encode())


def origin_allowed(allowed: tuple[str, ...], headers: Headers) -> bool:
    """A request without Origin (not a browser) passes; a browser's must be listed."""
    if not allowed:
        return True
    origins = headers.get_all("Origin")
    return all(origin in allowed for origin in origins)


_SECRETS = re.compile(r"(token=)[^&\s\"']+|(Bearer\s+)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide tokens in a log line (websockets logs request lines and headers in debug)."""
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "<redacted>", text)
