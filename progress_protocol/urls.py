"""URLs as they may be shown to people and logs: credentials hidden. Pure.

One rule for both sides: the server shows its Redis URL with it, the clients the URL
they connect to (a ``?token=`` in it), and the server's log redaction hides the same
parameters in any text.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = [
    "CREDENTIAL_PARAMETERS",
    "DECODINGS",
    "REDACTED",
    "TOKEN_PREFIX",
    "hide_credential_parameters",
    "hide_our_tokens",
    "safe_url",
]

#: What a hidden credential is replaced with.
REDACTED = "<redacted>"

#: Query parameters whose value is a credential, by their decoded name in lower case
#: (redis-py takes ``?password=`` as well as a password in the userinfo).
CREDENTIAL_PARAMETERS = frozenset(
    {
        "access_token",
        "auth_token",
        "client_secret",
        "passwd",
        "password",
        "refresh_token",
        "secret",
        "ssl_password",
        "token",
    }
)

#: A name=value pair in a query, a fragment, a form or a sentence: the name is made of
#: what a parameter's name is (percent-escapes included), the value stops at a
#: separator, a quote or whitespace; a value already hidden is matched whole, so that
#: hiding twice changes nothing.
_PARAMETER = re.compile(
    r"(?P<name>[\w.%+*~-]+)=(?P<value>" + re.escape(REDACTED) + r"|[^\s&;\"'<>]*)"
)
#: Percent-encoding undone this many times at most: once is what a server does, more
#: is what a mistake (or someone hiding from a filter) does.
DECODINGS = 3


#: Every token progress-server makes starts so (``progress-server token add``): a secret
#: scanner, the server's log and the clients' messages can tell one in any text.
TOKEN_PREFIX = "prg_"
_OUR_TOKENS = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]+")


def hide_our_tokens(text: str) -> str:
    """``text`` with every token of ours (``prg_...``) replaced with :data:`REDACTED`."""
    return _OUR_TOKENS.sub(REDACTED, text) if TOKEN_PREFIX in text else text


def safe_url(url: str) -> str:
    """``url`` as it may be shown: its userinfo (``user:password@``) and the value of
    every credential parameter (:data:`CREDENTIAL_PARAMETERS`, whatever the case or
    the percent-encoding of its name), and any token of ours wherever it is (a path),
    replaced with :data:`REDACTED`.

    A password holding an ``@``, ``/``, ``?`` or ``#`` that was not percent-encoded is
    hidden too: everything before the last ``@`` counts as the userinfo.

    Args:
        url: Any text; without ``://``, what comes before an ``@`` is hidden all the same.
    """
    # First: a credential's value may hold an "@", which is not the userinfo's.
    url = hide_our_tokens(hide_credential_parameters(url))
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    if "@" in rest:
        rest = REDACTED + "@" + rest.rpartition("@")[2]
    return scheme + separator + rest


def hide_credential_parameters(text: str) -> str:
    """``text`` with the value of every ``name=value`` whose name is a credential's
    (:data:`CREDENTIAL_PARAMETERS`) replaced with :data:`REDACTED`."""
    if "=" not in text:
        return text
    return _PARAMETER.sub(_hide_parameter, text)


def _is_credential(name: str) -> bool:
    for _ in range(DECODINGS):
        if "%" not in name:
            break
        name = unquote(name)
    return name.replace("+", " ").strip().lower().replace("-", "_") in CREDENTIAL_PARAMETERS


def _hide_parameter(match: re.Match[str]) -> str:
    name = match.group("name")
    if not match.group("value") or not _is_credential(name):
        return match.group(0)
    return f"{name}={REDACTED}"
