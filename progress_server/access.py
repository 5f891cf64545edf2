"""Who holds which credential: no token, the shared ``--token``, or the tokens file,
re-read when it changes on disk.

The file is looked at every :data:`POLL_SECONDS` (its size, times and inode: no signal
is needed, and SIGHUP keeps meaning a graceful stop). A change is read once it held
still for one look (so within two looks, a second), not in the middle of a write; a
file that parses replaces the last one, and :attr:`Access.on_change` hears it, so that
the connections of a revoked token are closed. One that does not parse (or is empty,
or cut short) is logged, once, and the last good one stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Literal

from .auth import token_matches
from .tokens import Entry, Tokens, TokensFileError, read_tokens
from .users import OPERATOR

__all__ = ["POLL_SECONDS", "SHARED", "Access"]

logger = logging.getLogger(__name__)

#: How often the tokens file is looked at: a change takes effect within this.
POLL_SECONDS = 0.5

#: What the shared token, or no token at all, grants: an operator with no name of its
#: own (the client's is used) and no credential to revoke.
SHARED = Entry(name="", role=OPERATOR, digest=b"")

_Stamp = tuple[int, int, int, int, int]


class Access:
    """The credentials a server accepts now.

    Args:
        token: The shared token (``--token``); None for none.
        tokens_file: The tokens file (``--tokens-file``); None for none. Not both.
        poll_seconds: How often the file is looked at.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        tokens_file: str | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        assert token is None or tokens_file is None, "--token or --tokens-file, not both"
        self.token = token
        self.tokens_file = tokens_file
        self.poll_seconds = poll_seconds
        #: The entries in force: the last good read of the file.
        self.tokens = Tokens()
        #: Called with the new entries after the file changed and parsed.
        self.on_change: Callable[[Tokens], None] | None = None
        self._stamp: _Stamp | None = None  # of the file in force
        self._changed: _Stamp | None = None  # of a change seen at the last look
        self._complaint: str | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def mode(self) -> Literal["open", "token", "file"]:
        if self.tokens_file is not None:
            return "file"
        return "open" if self.token is None else "token"

    @property
    def needs_token(self) -> bool:
        return self.mode != "open"

    @property
    def fingerprint(self) -> str | None:
        """What instances sharing a calculation compare: the file's entries' hash."""
        return self.tokens.fingerprint if self.mode == "file" else None

    def identify(self, presented: str | None) -> Entry | None:
        """What a presented token grants: its entry in the file, :data:`SHARED` for the
        shared token or when none is needed, None when it opens nothing."""
        if self.mode == "open":
            return SHARED
        if self.mode == "token":
            assert self.token is not None
            return SHARED if token_matches(self.token, presented) else None
        return self.tokens.identify(presented)

    def start(self) -> None:
        """Read the tokens file and begin watching it (needs a running loop).

        Raises:
            TokensFileError: If the file cannot be read or parsed: a server does not
                start with credentials it cannot know.
        """
        if self.tokens_file is None:
            return
        self._stamp = _stamp(self.tokens_file)
        self.tokens = read_tokens(self.tokens_file)
        logger.info(
            "tokens file %s: %s (fingerprint %s)",
            self.tokens_file,
            _summary(self.tokens),
            self.tokens.fingerprint,
            extra={"fingerprint": self.tokens.fingerprint},
        )
        self._watch = asyncio.get_running_loop().create_task(self._watch_forever())

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def reload(self) -> bool:
        """Read the file again if it changed and then held still for one look (a
        write under way is not taken for the file); True if new entries took effect.

        A read that fails is tried again at the next look, whatever its cause (a file
        being written, too many open files, a network file system's hiccup).
        """
        assert self.tokens_file is not None
        stamp = _stamp(self.tokens_file)
        if stamp == self._stamp:
            return False
        if stamp != self._changed:
            self._changed = stamp  # changed since the last look: read it at the next
            return False
        try:
            tokens = read_tokens(self.tokens_file)
        except TokensFileError as exc:
            if str(exc) != self._complaint:
                self._complaint = str(exc)
                logger.error("tokens file not reloaded, the last good one stays: %s", exc)
            self._changed = None  # tried again at the next look
            return False
        self._stamp = stamp
        if self._complaint is not None:
            self._complaint = None
            if tokens == self.tokens:
                logger.info("tokens file readable again, unchanged")
        if tokens == self.tokens:
            return False
        self.tokens = tokens
        level = logging.WARNING if not tokens.entries else logging.INFO
        logger.log(
            level,
            "tokens file reloaded: %s (fingerprint %s)",
            _summary(tokens),
            tokens.fingerprint,
            extra={"fingerprint": tokens.fingerprint},
        )
        if self.on_change is not None:
            self.on_change(tokens)
        return True

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                self.reload()
            except Exception:  # the watch must outlive any bug
                logger.exception("reading the tokens file failed")


def _stamp(path: str) -> _Stamp | None:
    """What tells a changed file: its inode, size and times (None if it is gone)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_dev)


def _summary(tokens: Tokens) -> str:
    roles: dict[str, int] = {}
    for entry in tokens.entries:
        roles[entry.role] = roles.get(entry.role, 0) + 1
    if not roles:
        return "no entries: every token is refused"
    return ", ".join(f"{count} {role}{'' if count == 1 else 's'}" for role, count in roles.items())
