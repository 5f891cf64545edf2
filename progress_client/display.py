"""Text from the network made safe to show on a terminal. Pure, no I/O."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["REPLACEMENT", "describe_exception", "duration", "printable", "safe_url"]

#: What stands in for a character that must not reach a terminal.
REPLACEMENT = "\N{REPLACEMENT CHARACTER}"


def printable(text: str, limit: int = 1024) -> str:
    """``text`` with every non-printable character replaced, cut short past ``limit``.

    The decoder already refuses control characters in server messages; this is the
    second line of defence for the texts it does not check (a close reason, an
    exception's message) and for any future field. A raw ESC, CR or bidi override
    could rewrite what a terminal shows; a lone surrogate could not even be encoded.
    Markup is not this function's business: show the result as plain text
    (``rich.text.Text``, ``textual.content.Content``), never as markup.
    """
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else REPLACEMENT for char in text)


def describe_exception(exc: BaseException) -> str:
    """An exception's type and message in one line, for a log line or a sentence."""
    text = " ".join(str(exc).splitlines())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def duration(seconds: float) -> str:
    """A duration for a person, readable at any scale and never long: "0.4 s",
    "59.9 s", "2 min 5 s", "2 h 59 min", "3 d 4 h"."""
    if not seconds > 0:  # NaN too
        return "0.0 s"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    total = round(min(seconds, 1e12))
    if total < 3600:
        big, small = divmod(total, 60)
        unit, smaller = "min", "s"
    elif total < 86400:
        big, small = total // 3600, total % 3600 // 60
        unit, smaller = "h", "min"
    else:
        big, small = total // 86400, total % 86400 // 3600
        unit, smaller = "d", "h"
    return f"{big} {unit} {small} {smaller}" if small else f"{big} {unit}"


def safe_url(url: str) -> str:
    """``url`` as it may be shown: the value of a ``token`` query parameter (whatever
    its spelling, e.g. ``tok%65n``) and a password are replaced with ``***``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret = any(unquote(name).strip().lower() == "token" for name, _ in query)
    if secret:
        shown = [
            (name, "***" if name.strip().lower() == "token" else value) for name, value in query
        ]
        parts = parts._replace(query=urlencode(shown, safe="*"))
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    return urlunsplit(parts) if secret or parts.password is not None else url
