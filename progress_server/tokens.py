"""The tokens file: a name, a role and the SHA-256 of a token per line, never a token.

    # progress tokens: NAME ROLE sha256:HEX, one a line (progress-server token add)
    alice operator sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    ci-bot viewer sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752

A token is 32 random bytes (``prg_`` and 43 URL-safe characters): a plain SHA-256 of it
cannot be reversed or guessed, so no slow password hash is needed, and a stolen file
holds nothing that opens the server. Reading, matching (in constant time) and writing
(atomically, mode 0600) are here; re-reading it when it changes is
:mod:`progress_server.access`'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from progress_protocol.messages import ROLES
from progress_protocol.urls import TOKEN_PREFIX

__all__ = [
    "Entry",
    "Tokens",
    "TokensFileError",
    "check_name",
    "digest_of",
    "editing",
    "new_token",
    "read_tokens",
    "write_tokens",
]

#: Names: a letter or digit, then letters, digits and ``. _ @ + -``; 64 at most.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")
_HEADER = "# progress tokens: NAME ROLE sha256:HEX, one a line (progress-server token add)\n"
#: Entries in a file at most: a file is read whole on every change.
MAX_ENTRIES = 10_000


class TokensFileError(ValueError):
    """The tokens file cannot be used; the message says where and why."""


def digest_of(token: str) -> bytes:
    """The SHA-256 of a token, as stored."""
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    """A new random token: 256 bits, URL-safe, with :data:`TOKEN_PREFIX`."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    """``name`` if it can stand in a tokens file.

    Raises:
        TokensFileError: With a sentence saying what a name may hold.
    """
    if not _NAME.fullmatch(name):
        raise TokensFileError(
            f"{name!r} cannot be a name: use 1 to 64 letters, digits and . _ @ + -, "
            "starting with a letter or digit."
        )
    return name


@dataclass(frozen=True, slots=True)
class Entry:
    """One person or robot: a name, a role, the SHA-256 of their token."""

    name: str
    role: str
    digest: bytes

    def line(self) -> str:
        return f"{self.name} {self.role} sha256:{self.digest.hex()}\n"


@dataclass(frozen=True)
class Tokens:
    """The entries of a tokens file, in its order; names are unique, and so are tokens."""

    entries: tuple[Entry, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Tokens:
        """Read a tokens file's text; blank lines and ``#`` comments are skipped.

        Raises:
            TokensFileError: At the first line that is not ``NAME ROLE sha256:HEX``, a
                name or a token given twice, or past :data:`MAX_ENTRIES`.
        """
        entries: list[Entry] = []
        names: set[str] = set()
        digests: set[bytes] = set()
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 3:
                raise TokensFileError(f"line {number}: expected NAME ROLE sha256:HEX")
            name, role, stored = parts
            if not _NAME.fullmatch(name):
                raise TokensFileError(f"line {number}: {name!r} is not a valid name")
            if role not in ROLES:
                raise TokensFileError(
                    f"line {number}: unknown role {role!r} (roles: {', '.join(ROLES)})"
                )
            match = _DIGEST.fullmatch(stored)
            if match is None:
                # Say so without echoing it: it may be a token pasted in by mistake.
                raise TokensFileError(
                    f"line {number}: the third field must be sha256: and 64 hex digits "
                    "(the file holds hashes, never tokens: use progress-server token add)"
                )
            digest = bytes.fromhex(match.group(1))  # either case
            if name in names:
                raise TokensFileError(f"line {number}: {name!r} is given twice")
            if digest in digests:
                raise TokensFileError(f"line {number}: this token is given twice")
            if len(entries) == MAX_ENTRIES:
                raise TokensFileError(f"more than {MAX_ENTRIES} entries")
            names.add(name)
            digests.add(digest)
            entries.append(Entry(name, role, digest))
        return cls(tuple(entries))

    def render(self) -> str:
        return _HEADER + "".join(entry.line() for entry in self.entries)

    @property
    def fingerprint(self) -> str:
        """What every instance sharing a calculation compares: the same entries, the
        same fingerprint (comments and blank lines aside)."""
        canonical = "".join(entry.line() for entry in self.entries)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def identify(self, presented: str | None) -> Entry | None:
        """The entry whose token was presented; None for none or an unknown one.

        Every entry is compared, in constant time each: how long it takes says nothing
        of which entry, if any, came close.
        """
        if presented is None:
            return None
        digest = digest_of(presented)
        found: Entry | None = None
        for entry in self.entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        return found

    def identify_digest(self, digest: bytes) -> Entry | None:
        """The entry of a token already hashed (a connection's, when the file changed)."""
        return self._by_digest.get(digest)

    @functools.cached_property
    def _by_digest(self) -> dict[bytes, Entry]:
        return {entry.digest: entry for entry in self.entries}

    def named(self, name: str) -> Entry | None:
        return next((entry for entry in self.entries if entry.name == name), None)

    def added(self, name: str, role: str, token: str) -> Tokens:
        """These entries and a new one.

        Raises:
            TokensFileError: If the name is taken or invalid, or the role unknown.
        """
        check_name(name)
        if role not in ROLES:
            raise TokensFileError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        if self.named(name) is not None:
            raise TokensFileError(
                f"{name!r} already has a token: revoke it first (progress-server token "
                f"revoke {name}) to give them a new one"
            )
        return Tokens((*self.entries, Entry(name, role, digest_of(token))))

    def revoked(self, name: str) -> Tokens:
        """These entries without ``name``'s.

        Raises:
            TokensFileError: If nobody has that name.
        """
        if self.named(name) is None:
            raise TokensFileError(f"nobody is called {name!r} in the tokens file")
        return Tokens(tuple(entry for entry in self.entries if entry.name != name))


def read_tokens(path: str | os.PathLike[str]) -> Tokens:
    """Read and parse a tokens file.

    Raises:
        TokensFileError: If it cannot be read (the OS's reason) or parsed.
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(64 * 1024 * 1024)
    except FileNotFoundError:
        raise TokensFileError(
            f"{os.fspath(path)} does not exist: create it with progress-server token add"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TokensFileError(f"cannot read {os.fspath(path)}: {reason}") from None
    if not text:
        # An editor or a shell caught in the middle of a write ("> tokens"): a file
        # that refuses everyone is written with a comment line at least.
        raise TokensFileError(
            f"{os.fspath(path)} is empty (being written?); to refuse every token, "
            "leave a comment line in it"
        )
    if not text.endswith("\n"):
        raise TokensFileError(f"{os.fspath(path)} looks cut short: its last line has no end")
    try:
        return Tokens.parse(text)
    except TokensFileError as exc:
        raise TokensFileError(f"{os.fspath(path)}, {exc}") from None


@contextlib.contextmanager
def editing(path: str | os.PathLike[str]) -> Iterator[Tokens]:
    """The entries of a tokens file (none if it does not exist yet), held against other
    edits (a lock beside it) until the block ends: two people adding at once both
    land.

    Raises:
        TokensFileError: If it cannot be read, parsed or locked.
    """
    lock_path = f"{os.path.realpath(path)}.lock"
    try:
        lock = open(lock_path, "a")  # noqa: SIM115  # held for the block
    except OSError as exc:
        raise TokensFileError(f"cannot lock {lock_path}: {exc.strerror or exc}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield read_tokens(path) if os.path.exists(path) else Tokens()


def write_tokens(path: str | os.PathLike[str], tokens: Tokens) -> None:
    """Write a tokens file whole, in one step: a server re-reading it sees the old file
    or the new, never half of one.

    A new file is readable by its owner only (0600). A file that exists keeps its owner,
    group and mode (a server running as another user must still read it after an edit
    made with sudo), and a symbolic link keeps pointing at the file it names, which is
    the one written (a file shared by several instances).

    Raises:
        TokensFileError: If it cannot be written (the OS's reason).
    """
    target = Path(os.path.realpath(path))
    try:
        try:
            before: os.stat_result | None = os.stat(target)
        except FileNotFoundError:
            before = None
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(tokens.render())
                file.flush()
                if before is not None:
                    os.fchown(file.fileno(), before.st_uid, before.st_gid)
                os.fchmod(file.fileno(), 0o600 if before is None else before.st_mode & 0o7777)
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise TokensFileError(f"cannot write {target}: {exc.strerror or exc}") from None
