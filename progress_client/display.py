"""Text from the network made safe to show on a terminal. Pure, no I/O."""

from __future__ import annotations

__all__ = ["REPLACEMENT", "describe_exception", "duration", "printable"]

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
