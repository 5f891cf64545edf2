"""What the server may write to a log: credentials hidden, a peer's characters escaped.

Pure functions. URLs are shown with :func:`progress_protocol.urls.safe_url`, the rule
the clients use too; :func:`redact` cleans any text, whoever wrote it, and is what
:mod:`~progress_server.logs` runs on every record; :func:`safe_path` is how a request's
target is shown; :func:`escape_controls` makes a peer's characters harmless to a
terminal. None of them raises, whatever the text.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote

from progress_protocol.urls import (
    DECODINGS,
    REDACTED,
    hide_credential_parameters,
    hide_our_tokens,
    safe_url,
)

__all__ = ["PATH_LIMIT", "escape_controls", "redact", "safe_path"]

#: The longest request path a log line shows, in characters.
PATH_LIMIT = 200

#: A run of this many characters of a secret is hidden wherever it appears, so that a
#: secret cut short (an error sentence quotes 40 characters of a peer's input,
#: websockets' debug lines keep the two ends of a long frame) still shows nothing.
SECRET_RUN = 8

#: A URL with a userinfo part, in a sentence: its end is whitespace or a quote.
_URL_WITH_USERINFO = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]*@[^\s\"'<>]*")
#: Credentials in an Authorization header, but not the challenge
#: 'WWW-Authenticate: Bearer realm="progress"', which holds no secret.
_CREDENTIALS = re.compile(r"\b(Bearer|Basic)(\s+)(?!realm=)[^\s\"',]+", re.IGNORECASE)
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_MARKER = re.compile(re.escape(REDACTED))


def redact(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """Hide credentials in a log line or a traceback.

    Hidden: the tokens this server makes (``prg_...``), the userinfo of any URL, the
    value of any credential parameter (``token=``, ``tok%65n=``, ``password=``...),
    ``Bearer`` and ``Basic`` credentials, and each of ``secrets`` wherever it appears, in clear or
    percent-encoded in any way (mixed-case hex, partly, more than once), whole or a run
    of :data:`SECRET_RUN` of its characters.

    Args:
        text: The text to clean.
        secrets: Values to hide wherever they appear (the server's own token): what no
            pattern can foresee.
    """
    for secret in secrets:
        if secret:
            text = _hide_secret(text, secret)
    text = hide_our_tokens(text)
    if "@" in text and "://" in text:
        text = _URL_WITH_USERINFO.sub(lambda match: safe_url(match.group()), text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _CREDENTIALS.sub(lambda match: match.group(1) + match.group(2) + REDACTED, text)
    return hide_credential_parameters(text)


def safe_path(target: str, *, secrets: tuple[str, ...] = ()) -> str:
    """A request target as a log line shows it: its path only (a query holds what the
    log must not), percent-decoded, each of ``secrets`` hidden, and cut to
    :data:`PATH_LIMIT` characters. Control characters are left to the log's formatter.

    Args:
        target: The request target, or its path.
        secrets: Values to hide (the server's token), in whatever spelling they came.
    """
    path = target.partition("?")[0].partition("#")[0]
    decoded = path
    for _ in range(DECODINGS):  # every spelling of a secret becomes the secret
        if "%" not in decoded:
            break
        decoded = unquote(decoded, errors="replace")
    for secret in secrets:
        if secret:
            decoded = _hide_secret(decoded, secret)
    decoded = hide_our_tokens(decoded)
    if len(decoded) > PATH_LIMIT:
        decoded = decoded[:PATH_LIMIT] + "..."
    return decoded


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    r"""Show every character that is not printable as an escape (``\x1b``, ``\r``,
    ``\u202e``), so that what a peer sent can neither forge log lines nor drive, or
    reorder (bidi overrides), the terminal that shows the log."""
    if text.isprintable():
        return text
    return "".join(
        char
        if char.isprintable() or (keep_newlines and char == "\n")
        else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def _hide_secret(text: str, secret: str) -> str:
    """``text`` with every spelling of ``secret``, and every run of SECRET_RUN of its
    characters, replaced with REDACTED."""
    runs, anchors = _runs_of(secret)
    plus = " " in secret and "+" in text  # a form's space
    if (
        "%" not in text
        and not plus
        and (text.isascii() or secret.isascii())  # then the text is its own decoded view
        and not any(anchor in text for anchor in anchors)
    ):
        return text  # the usual case: a few substring searches, in C
    found: list[tuple[int, int]] = []
    # A form's space is "+" (and "%2B" a "+"): read the text both ways, of one length.
    # Each stage of decoding is searched, the text as it is too: a secret that holds a
    # "%41" of its own is found as written, not only as decoded.
    views = [
        view
        for source in ((text, text.replace("+", " ")) if plus else (text,))
        for view in _decoded_views(source)
    ]
    for each, spans in views:
        position = 0
        while match := runs.search(each, position):
            found.append((spans[match.start()][0], spans[match.end() - 1][1]))
            position = match.start() + 1  # runs overlap: a longer piece is hidden whole
    if not found:
        return text
    # What an earlier pass hid stays as it is, should the secret be part of the marker.
    hidden = [marker.span() for marker in _MARKER.finditer(text)]
    found = [(a, b) for a, b in found if not any(c <= a and b <= d for c, d in hidden)]
    merged: list[list[int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces: list[str] = []
    last = 0
    for start, end in merged:
        pieces += (text[last:start], REDACTED)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


@functools.lru_cache(maxsize=16)
def _runs_of(secret: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A pattern matching any run of SECRET_RUN characters of ``secret`` (the whole of
    a shorter one), compared byte for byte as percent-decoding yields them; and pieces
    of it one of which every such run holds, to rule most text out without the pattern.
    """
    raw = secret.encode().decode("latin-1")  # one character a byte, as in a decoded view
    size = min(SECRET_RUN, len(raw))
    pieces = {raw[start : start + size] for start in range(len(raw) - size + 1)}
    # A run of `size` from any offset holds the piece of `step` at the next multiple of
    # `step`, since 2 * step <= size.
    step = max(1, size // 2)
    anchors = tuple({raw[start : start + step] for start in range(0, len(raw) - step + 1, step)})
    return re.compile("|".join(re.escape(piece) for piece in sorted(pieces))), anchors


def _decoded_views(text: str) -> list[tuple[str, list[tuple[int, int]]]]:
    """``text`` as it is, then percent-decoded once, twice, up to DECODINGS times, one
    character a byte, each with the span of ``text`` every character came from."""
    if text.isascii():
        view = text
        spans = [(index, index + 1) for index in range(len(text))]
    else:  # each byte of a character stands for the whole character
        view = text.encode("utf-8", "surrogatepass").decode("latin-1")
        spans = [
            (index, index + 1)
            for index, char in enumerate(text)
            for _ in char.encode("utf-8", "surrogatepass")
        ]
    views = [(view, spans)]
    for _ in range(DECODINGS):
        if "%" not in view:
            break
        decoded: list[str] = []
        decoded_spans: list[tuple[int, int]] = []
        last = 0
        for match in _PERCENT.finditer(view):
            start, end = match.span()
            decoded.append(view[last:start])
            decoded_spans.extend(spans[last:start])
            decoded.append(chr(int(match.group(1), 16)))
            decoded_spans.append((spans[start][0], spans[end - 1][1]))
            last = end
        if last == 0:
            break
        decoded.append(view[last:])
        decoded_spans.extend(spans[last:])
        view, spans = "".join(decoded), decoded_spans
        views.append((view, spans))
    return views
