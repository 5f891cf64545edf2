"""File descriptors: every client holds one, and running out fails silently.

When a process is out of descriptors, ``accept()`` fails: asyncio's loop logs a
traceback a second, and uvloop (libuv) accepts and closes each new connection at once,
logging nothing. Either way new clients are reset and the operator is not told why.
This module raises the soft limit as far as the hard limit allows, says at startup
when ``--max-clients`` cannot fit in it, and watches for exhaustion while serving.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
from collections.abc import Callable

__all__ = [
    "RESERVED_DESCRIPTORS",
    "DescriptorWatch",
    "clients_that_fit",
    "open_files_limit",
    "raise_open_files_limit",
]

logger = logging.getLogger(__name__)

#: Descriptors the process needs besides its clients: the listening sockets, the
#: event loop's own, standard streams, log files, and handshakes under way.
RESERVED_DESCRIPTORS = 32

EXHAUSTED = (errno.EMFILE, errno.ENFILE)


def open_files_limit() -> int | None:
    """The soft limit on open files, None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_files_limit() -> int | None:
    """Raise the soft limit on open files to the hard limit; returns the soft limit now.

    A soft limit of 1024 is a common default that a server outgrows; the hard limit is
    what the administrator allows, and needs no privilege to reach.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. macOS caps it below an infinite hard limit
            logger.debug("could not raise the limit on open files: %s", exc)
    return open_files_limit()


def clients_that_fit(limit: int | None) -> int | None:
    """How many clients can connect under a limit on open files (None: no limit)."""
    return None if limit is None else max(0, limit - RESERVED_DESCRIPTORS)


class DescriptorWatch:
    """Tells the operator, at most once per ``interval``, that descriptors ran out.

    Each interval it tries to open one more file: failing with EMFILE or ENFILE means
    that an accept() would fail too. asyncio's own report of a failed accept comes
    through :meth:`exhausted` as well (see :meth:`handle_loop_exception`).

    Args:
        connections: How many connections are open now (handshakes included), for the
            log line.
        interval: Seconds between two probes, and between two log lines at most.
    """

    def __init__(self, connections: Callable[[], int], *, interval: float = 1.0) -> None:
        self.connections = connections
        self.interval = interval
        self._last_report = float("-inf")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._probe_forever())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def exhausted(self) -> None:
        """Log that new connections are being refused, unless that was said just now."""
        now = asyncio.get_running_loop().time()
        if now - self._last_report < self.interval:
            return
        self._last_report = now
        limit = open_files_limit()
        logger.error(
            "out of file descriptors (limit %s, %d connections open): new connections "
            "are refused until some close; raise the limit (ulimit -n, or LimitNOFILE= "
            "for systemd) or lower --max-clients",
            "none" if limit is None else limit,
            self.connections(),
        )

    def probe(self) -> bool:
        """Whether one more descriptor can be had now; logs when it cannot."""
        try:
            descriptor = os.open(os.devnull, os.O_RDONLY)
        except OSError as exc:
            if exc.errno in EXHAUSTED:
                self.exhausted()
                return False
            raise
        os.close(descriptor)
        return True

    def handle_loop_exception(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, object]
    ) -> None:
        """An event loop exception handler: asyncio's failed accepts become our log line
        (instead of a traceback a second); anything else goes to the default handler."""
        exception = context.get("exception")
        if isinstance(exception, OSError) and exception.errno in EXHAUSTED:
            self.exhausted()
        else:
            loop.default_exception_handler(context)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.probe()
            except Exception:  # the watch must outlive any surprise
                logger.exception("probing the open files failed")
