"""The tokens file as the server sees it over time: a change is read once it held
still, a failed read is tried again, a bad file keeps the last good one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from progress_server import access as access_module
from progress_server.access import Access
from progress_server.tokens import Tokens, TokensFileError, new_token, read_tokens, write_tokens

ALICE, BOB = new_token(), new_token()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    write_tokens(path, Tokens().added("alice", "operator", ALICE).added("bob", "viewer", BOB))
    return path


def started(path: Path) -> tuple[Access, list[Tokens]]:
    access = Access(tokens_file=str(path))
    access.tokens = read_tokens(path)
    access._stamp = access_module._stamp(str(path))
    heard: list[Tokens] = []
    access.on_change = heard.append
    return access, heard


def test_a_change_is_read_once_it_held_still(path: Path) -> None:
    """The look that sees a change waits; the next, seeing the same file, applies it
    (each look is POLL_SECONDS apart: within a second in all)."""
    access, heard = started(path)
    write_tokens(path, access.tokens.revoked("bob"))
    assert access.reload() is False and access.identify(BOB) is not None
    assert access.reload() is True and access.identify(BOB) is None
    assert [[e.name for e in tokens.entries] for tokens in heard] == [["alice"]]
    assert access.reload() is False  # nothing new


def test_a_failed_read_is_tried_again(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that fails once (too many open files, a network file system's hiccup)
    does not lose the change: a later look reads it."""
    access, _ = started(path)
    write_tokens(path, access.tokens.revoked("bob"))
    real = access_module.read_tokens
    failures = iter([TokensFileError("cannot read tokens: Too many open files")])

    def flaky(name: str) -> Tokens:
        for failure in failures:
            raise failure
        return real(name)

    monkeypatch.setattr(access_module, "read_tokens", flaky)
    results = [access.reload() for _ in range(5)]
    assert results.count(True) == 1 and access.identify(BOB) is None


def test_a_bad_file_keeps_the_last_good_one_and_says_when_fixed(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An empty file is refused (once logged), the last good entries stay; the good
    file back: one line says so."""
    caplog.set_level(logging.INFO, "progress_server.access")
    access, heard = started(path)
    good = path.read_text()
    path.write_text("")
    for _ in range(4):
        access.reload()
    assert access.identify(ALICE) is not None and access.identify(BOB) is not None
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "is empty (being written?)" in errors[0]
    path.write_text(good)
    for _ in range(2):
        access.reload()
    assert "tokens file readable again, unchanged" in caplog.text
    assert heard == []  # nobody was closed
