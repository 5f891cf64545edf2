"""The server's log: what reaches it is safe to show and to keep, as text or JSON lines.

Every record goes through :class:`SafeFormatter`, whoever logged it (websockets' debug
lines show request lines and headers; a traceback can quote a malformed request):
credentials are replaced with ``<redacted>`` (:func:`~.redaction.redact`), and control
characters sent by a peer are escaped, so that nobody can forge a log line or drive the
operator's terminal.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Callable
from typing import Any

from .redaction import escape_controls, redact

__all__ = ["FIELDS", "LOG_FORMAT", "Burst", "JsonFormatter", "SafeFormatter"]

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class SafeFormatter(logging.Formatter):
    """A formatter that redacts credentials and escapes control characters in everything.

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
    "claimed_name",
    "role",
    "client",
    "fingerprint",
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


class Burst:
    """Lets ``each`` events a second be logged one by one, and sums up the rest.

    When 10,000 clients reconnect at once, 10,000 lines saying so drown what the
    operator looks for and cost a sixth of the connection rate; the first ``each`` in a
    second are still logged as usual, then one line a second says how many more there
    were (``summary(count)``). Nothing is held back for longer than a second.

    Args:
        each: Events a second logged one by one.
        summary: Logs the ones that were not, given how many.
    """

    def __init__(self, each: int, summary: Callable[[int], None]) -> None:
        self.each = each
        self.summary = summary
        self._window_end = float("-inf")
        self._passed = 0
        self._held = 0
        self._timer: asyncio.TimerHandle | None = None

    def allow(self) -> bool:
        """Whether this event is logged one by one; if not, it is counted."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._window_end:
            self._window_end = now + 1.0
            self._passed = 0
        if self._passed < self.each:
            self._passed += 1
            return True
        self._held += 1
        if self._timer is None:
            self._timer = loop.call_at(self._window_end, self.flush)
        return False

    def flush(self) -> None:
        """Log the summary of the events held so far, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, 0
        if held:
            try:
                self.summary(held)
            except Exception:  # a log line must not break what it describes
                logging.getLogger(__name__).exception("summing up log lines failed")
