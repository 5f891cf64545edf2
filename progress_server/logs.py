"""The server's log: what reaches it is safe to show and to keep, as text or JSON lines.

Every record goes through :class:`SafeFormatter`, whoever logged it (websockets' debug
lines show request lines and headers; a traceback can quote a malformed request):
tokens are replaced with ``<redacted>``, and control characters sent by a peer are
escaped, so that nobody can forge a log line or drive the operator's terminal.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from .auth import escape_controls, redact

__all__ = ["FIELDS", "LOG_FORMAT", "JsonFormatter", "SafeFormatter"]

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
        text = super().format(record)
        if not (record.exc_info or record.exc_text or record.stack_info):
            return text  # the message alone: formatMessage made it safe
        # Tracebacks keep their newlines; the whole text is redacted once more, since
        # another handler may have cached an exception's text unredacted.
        return escape_controls(redact(text, secrets=self.secrets), keep_newlines=True)


#: The structured fields an event may carry (``extra=`` of a logging call).
FIELDS = (
    "client_id",
    "peer",
    "client_name",
    "state",
    "seq",
    "calculation_id",
    "clients",
    "code",
    "reason",
    "path",
    "status",
)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the event's fields, so
    that ``jq`` and log shippers need no regular expression. Redacted like the text;
    JSON escapes control characters by itself.

    Args:
        secrets: Values to hide wherever they appear (the server's token).
        worker: The worker's number under ``--workers``.
    """

    def __init__(self, *, secrets: tuple[str, ...] = (), worker: str | None = None) -> None:
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), secrets=self.secrets),
        }
        if self.worker is not None:
            entry["worker"] = int(self.worker)
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = (
                    redact(value, secrets=self.secrets) if isinstance(value, str) else value
                )
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info), secrets=self.secrets)
        # ASCII only: no control, bidi or other unprintable character reaches a terminal.
        return json.dumps(entry, default=str)
