"""The server's log: what reaches it is safe to show and to keep.

Every record goes through :class:`SafeFormatter`, whoever logged it (websockets' debug
lines show request lines and headers; a traceback can quote a malformed request):
tokens are replaced with ``<redacted>``, and control characters sent by a peer are
escaped, so that nobody can forge a log line or drive the operator's terminal.
"""

from __future__ import annotations

import logging

from .auth import escape_controls, redact

__all__ = ["LOG_FORMAT", "SafeFormatter"]

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class SafeFormatter(logging.Formatter):
    """A formatter that redacts tokens and escapes control characters in everything.

    Args:
        fmt: The format of a line.
        secrets: Values to hide wherever they appear (the server's token).
    """

    def __init__(self, fmt: str = LOG_FORMAT, *, secrets: tuple[str, ...] = ()) -> None:
        super().__init__(fmt)
        self.secrets = tuple(secret for secret in secrets if secret)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # The message is one line: a newline in it came from a peer.
        return escape_controls(redact(super().formatMessage(record), secrets=self.secrets))

    def format(self, record: logging.LogRecord) -> str:
        # Tracebacks keep their newlines; the whole text is redacted once more, since
        # another handler may have cached an exception's text unredacted.
        text = redact(super().format(record), secrets=self.secrets)
        return escape_controls(text, keep_newlines=True)
