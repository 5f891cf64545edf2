"""The tokens file: its format, matching, and `progress-server token add|list|revoke`."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from progress_protocol.urls import TOKEN_PREFIX
from progress_server import cli
from progress_server.tokens import (
    Tokens,
    TokensFileError,
    digest_of,
    new_token,
    read_tokens,
)
from tests.helpers import TIMEOUT, ServerProcess, command, join
from tests.server.test_cli import run_cli


def test_a_token_is_found_by_its_hash_only() -> None:
    """A file made of entries finds each token, and neither an unknown token nor the
    stored hash (hex or raw) opens anything."""
    alice, bob = new_token(), new_token()
    tokens = Tokens().added("alice", "operator", alice).added("bob", "viewer", bob)
    assert tokens.identify(alice) == tokens.named("alice")
    assert tokens.identify(bob) == tokens.named("bob")
    assert tokens.identify(None) is None
    assert tokens.identify(new_token()) is None
    assert tokens.identify(digest_of(alice).hex()) is None
    assert alice not in tokens.render() and bob not in tokens.render()
    assert Tokens.parse(tokens.render()) == tokens


def test_new_tokens_are_long_random_and_recognisable() -> None:
    """Each token is new, starts with prg_ (for secret scanners and the log's
    redaction) and carries 256 bits."""
    made = {new_token() for _ in range(100)}
    assert len(made) == 100
    assert all(token.startswith(TOKEN_PREFIX) and len(token) == 47 for token in made)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("alice operator", "line 1: expected NAME ROLE sha256:HEX"),
        ("al ice operator sha256:" + "0" * 64, "line 1: expected"),
        ("-alice operator sha256:" + "0" * 64, "line 1: '-alice' is not a valid name"),
        ("alice root sha256:" + "0" * 64, "line 1: unknown role 'root'"),
        ("alice operator prg_abcdef", "the file holds hashes, never tokens"),
        ("alice operator sha256:" + "0" * 63, "sha256: and 64 hex digits"),
        (
            "# a comment\n\nalice operator sha256:"
            + "0" * 64
            + "\nalice viewer sha256:"
            + "1" * 64,
            "line 4: 'alice' is given twice",
        ),
        (
            "alice operator sha256:" + "0" * 64 + "\nbob viewer sha256:" + "0" * 64,
            "line 2: this token is given twice",
        ),
    ],
)
def test_a_bad_file_gets_a_sentence(text: str, words: str) -> None:
    """Every mistake is named with its line, and a pasted token is not echoed."""
    with pytest.raises(TokensFileError) as raised:
        Tokens.parse(text)
    assert words in str(raised.value)
    assert "prg_abcdef" not in str(raised.value)


def run_token(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``progress-server ARGS`` for the token commands, in this process (they start no
    server and set up no logging): as the real command, without a process's start."""
    result = CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def test_add_list_revoke(tmp_path: Path) -> None:
    """token add prints the token alone on stdout (for a script) and a sentence on
    stderr; the file is its owner's only; list shows names and roles, never a token;
    revoke removes one; mistakes are one sentence and status 1."""
    path = str(tmp_path / "tokens")
    added = run_token("token", "add", "alice", "--role", "operator", "--tokens-file", path)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith(TOKEN_PREFIX) and "\n" not in token
    assert "added alice (operator)" in added.stderr and token not in added.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert run_token("token", "add", "bob", env={"PROGRESS_TOKENS_FILE": path}).returncode == 0
    listed = run_token("token", "list", "--tokens-file", path)
    assert listed.stdout.split("\n") == ["alice  operator", "bob    viewer", ""]
    # The server's option, before the subcommand, names the file too.
    assert run_token("--tokens-file", path, "token", "list").stdout == listed.stdout
    unnamed = run_token("token", "list")
    assert unnamed.returncode == 2
    assert "say which tokens file: --tokens-file PATH, or PROGRESS_TOKENS_FILE" in unnamed.stderr
    assert token not in Path(path).read_text()
    assert read_tokens(path).identify(token) == read_tokens(path).named("alice")
    again = run_token("token", "add", "alice", "--tokens-file", path)
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == (
        "progress-server: 'alice' already has a token: revoke it first "
        "(progress-server token revoke alice) to give them a new one\n"
    )
    assert run_token("token", "revoke", "alice", "--tokens-file", path).returncode == 0
    assert run_token("token", "list", "--tokens-file", path).stdout == "bob  viewer\n"
    missing = run_token("token", "revoke", "carol", "--tokens-file", path)
    assert (missing.returncode, missing.stderr) == (
        1,
        "progress-server: nobody is called 'carol' in the tokens file\n",
    )
    bad = run_token("token", "add", "a b", "--tokens-file", path)
    assert bad.returncode == 2 and "cannot be a name" in bad.stderr  # a usage error
    assert "Traceback" not in bad.stderr + missing.stderr + again.stderr


def test_adds_at_once_all_land(tmp_path: Path) -> None:
    """Four people added at the same moment, by four processes: the lock keeps every
    one."""
    path = str(tmp_path / "tokens")
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda n: run_cli("token", "add", f"p{n}", "--tokens-file", path), range(4))
        )
    assert all(result.returncode == 0 for result in results)
    assert sorted(entry.name for entry in read_tokens(path).entries) == [f"p{n}" for n in range(4)]


def test_the_server_refuses_a_file_it_cannot_use(tmp_path: Path) -> None:
    """A missing or broken tokens file at start: one sentence, status 1, no traceback;
    --token with --tokens-file is a usage error."""
    missing = run_cli("--port", "0", "--tokens-file", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("progress-server: cannot use the tokens file: ")
    assert "does not exist: create it with progress-server token add" in missing.stderr
    broken = tmp_path / "broken"
    broken.write_text("alice operator\n")
    result = run_cli("--port", "0", "--tokens-file", str(broken))
    assert result.returncode == 1 and "line 1: expected NAME ROLE" in result.stderr
    both = run_cli("--token", "x", "--tokens-file", str(broken))
    assert both.returncode == 2 and "--token and --tokens-file do not go together" in both.stderr
    assert "Traceback" not in missing.stderr + result.stderr + both.stderr


async def test_a_real_server_reads_the_file(tmp_path: Path) -> None:
    """progress-server --tokens-file: the token added by the command opens it, the log
    says how many of each role (never a name's token)."""
    path = str(tmp_path / "tokens")
    adding = await asyncio.create_subprocess_exec(
        command("progress-server"),
        *("token", "add", "ci-bot", "--tokens-file", path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    output, _ = await asyncio.wait_for(adding.communicate(), TIMEOUT)
    token = output.decode().strip()
    server = await ServerProcess("--tokens-file", path).start()
    try:
        ws, hello, _ = await join(f"{server.url}?token={token}")
        async with ws:
            assert (hello["name"], hello["role"]) == ("ci-bot", "viewer")
        assert any("tokens file" in line and "1 viewer" in line for line in server.lines)
        assert not any(token in line for line in server.lines)
    finally:
        await server.stop()


def test_an_edit_keeps_the_files_owner_mode_and_link(tmp_path: Path) -> None:
    """token add (run as root, with sudo say) keeps the owner, group and mode of the
    file the server reads, and writes through a symbolic link to the file it names."""
    real = tmp_path / "shared"
    real.mkdir()
    path = real / "tokens"
    assert run_token("token", "add", "alice", "--tokens-file", str(path)).returncode == 0
    os.chown(path, 65534, 65534)  # the server's own user, say nobody
    os.chmod(path, 0o640)
    link = tmp_path / "tokens"
    link.symlink_to(path)
    assert run_token("token", "add", "bob", "--tokens-file", str(link)).returncode == 0
    assert link.is_symlink() and [e.name for e in read_tokens(path).entries] == ["alice", "bob"]
    info = os.stat(path)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o640)


def test_empty_or_cut_short_files_are_refused() -> None:
    """An empty file (a shell's "> tokens", an editor mid-write) or one whose last line
    has no end is refused, with a sentence; uppercase hex is fine."""
    good = "alice operator sha256:" + "AB" * 32 + "\n"
    assert Tokens.parse(good).named("alice") is not None
    for text, words in (("", "is empty (being written?)"), (good[:-9], "looks cut short")):
        with pytest.raises(TokensFileError) as raised:
            check_text(text)
        assert words in str(raised.value)


def check_text(text: str) -> Tokens:
    with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as file:
        file.write(text)
    try:
        return read_tokens(file.name)
    finally:
        os.unlink(file.name)
