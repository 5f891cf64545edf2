"""Text from the network made safe to show on a terminal. Pure, no I/O."""

from __future__ import annotations

__all__ = ["REPLACEMENT", "describe_exception", "printable"]

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
