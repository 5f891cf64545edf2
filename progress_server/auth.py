"""Who may connect: the shared token, browser origins and Host names. Pure functions."""

from __future__ import annotations

import functools
import hmac
import ipaddress
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.datastructures import Headers

from progress_protocol.messages import NAME_HEADER, clean_name

__all__ = [
    "ANY",
    "host_allowed",
    "origin_allowed",
    "presented_name",
    "presented_token",
    "request_hosts",
    "split_target",
    "token_matches",
]

#: In ``--allow-origin`` and ``--allow-host``: allow any.
ANY = "*"


def presented_token(headers: Headers, target: str) -> str | None:
    """The token a request presents: ``Authorization: Bearer X``, else ``?token=X``.

    Browsers cannot set headers on a WebSocket handshake, hence the query parameter.
    """
    for value in headers.get_all("Authorization"):
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    for name, value in parse_qsl(urlsplit(target).query):
        if name == "token":
            return value
    return None


def presented_name(headers: Headers, target: str) -> str | None:
    """What a request says its sender is called, cleaned; None if it says nothing usable."""
    values = headers.get_all(NAME_HEADER)
    if values:
        name = clean_name(unquote(values[0]))
    elif "=" not in target:
        return None  # no query parameter at all: the common case, at every handshake
    else:
        names = [value for key, value in parse_qsl(urlsplit(target).query) if key == "name"]
        name = clean_name(names[0]) if names else ""
    return name or None


def token_matches(expected: str, presented: str | None) -> bool:
    """Compare in constant time, so that the time taken tells nothing of the token."""
    return hmac.compare_digest(expected.encode(), (presented or "").encode())


def split_target(target: str) -> tuple[str | None, str]:
    """The authority and the path of a request target: ``(None, "/state")`` for
    ``/state?x=1``; ``("name:80", "/state")`` for the absolute form
    ``http://name:80/state`` (the userinfo left out, an empty path made ``/``)."""
    if not target.startswith("/"):
        scheme, separator, rest = target.partition("://")
        if separator and scheme[:1].isalpha():
            rest = rest.partition("#")[0].partition("?")[0]
            authority, slash, path = rest.partition("/")
            return authority.rpartition("@")[2], slash + path if slash else "/"
    # The origin form, the usual one: even "//name/state" is a path, not an authority.
    return None, target.partition("#")[0].partition("?")[0]


def request_hosts(headers: Headers, authority: str | None) -> list[str]:
    """The host a request is for: the authority of an absolute-form target, which
    replaces Host (RFC 9112, section 3.2.2), else its Host headers (usually one)."""
    return headers.get_all("Host") if authority is None else [authority]


def origin_allowed(
    allowed: tuple[str, ...], headers: Headers, *, hosts: list[str], tls: bool
) -> bool:
    """Whether a request may come from the web page that sent it.

    A request without Origin is not from a browser and passes. A browser's passes when
    its origin is the server's own (the scheme and the host it asked for, ``hosts``
    from :func:`request_hosts`), when it is listed in ``allowed``, or when ``allowed``
    holds ``*``. Browsers send Origin on every WebSocket handshake and every cross-site
    POST, so a page on another site can neither open the WebSocket nor submit a form
    to /start.
    """
    origins = headers.get_all("Origin")
    if not origins or ANY in allowed:
        return True
    own = _own_origin(hosts, tls=tls)
    return all(origin in allowed or _same_origin(origin, own) for origin in origins)


def host_allowed(allowed: tuple[str, ...], hosts: list[str], *, loopback: bool) -> bool:
    """Whether the host a request names (``hosts`` from :func:`request_hosts`) is one
    this server answers to.

    On a loopback address only loopback names pass (localhost, 127.0.0.1, [::1], with
    or without a port), plus those in ``allowed``: a DNS-rebinding page reaches
    127.0.0.1 through a name of its own, and that name is in its Host header. On
    another address any host passes, unless ``allowed`` lists some.
    """
    if ANY in allowed or (not loopback and not allowed):
        return True
    if not hosts:
        return True  # not a browser: every browser sends Host
    names = {name.lower() for name in allowed}
    return all(_is_loopback_name(name) or name in names for name in map(_host_name, hosts))


def _host_name(host: str) -> str:
    """``Host`` without its port, lower case; an IPv6 address without brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


@functools.lru_cache(maxsize=64)  # names repeat: parsing an address is 5 % of a handshake
def _is_loopback_name(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _own_origin(hosts: list[str], *, tls: bool) -> tuple[str, str, int] | None:
    if len(hosts) != 1:
        return None  # none, or ambiguous: no page can claim to be the server's own
    scheme = "https" if tls else "http"
    return _origin_parts(f"{scheme}://{hosts[0]}")


def _same_origin(origin: str, own: tuple[str, str, int] | None) -> bool:
    return own is not None and _origin_parts(origin) == own


def _origin_parts(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the default port filled in; None if it is not a URL."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)
