"""The real `progress-ctl` command against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from progress_server.backends.redis import RedisBackend
from progress_server.server import ProgressServer
from tests.client.hostile import COMBINED_CASES, Case, HostileServer
from tests.client.servers import instances, not_found_sentence
from tests.helpers import (
    STEP,
    TIME_FACTOR,
    TIMEOUT,
    ServerProcess,
    command,
    free_port,
    http_request,
    join,
    recv_type,
    send_json,
)
from tests.redis_server import RedisServer


async def ctl(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        command("progress-ctl"),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    stdout, stderr = await asyncio.wait_for(process.communicate(), 2 * TIMEOUT)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def run_ctl(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await finish(await ctl(*args, env=env))


async def test_status_prints_the_state(server: ProgressServer) -> None:
    """status: one line for a person; --json: the state message."""
    code, out, err = await run_ctl("--url", server.url, "status")
    assert (code, err) == (0, "")
    assert out.startswith("IDLE (seq 0, at ")
    code, out, _ = await run_ctl("--url", server.url, "status", "--json")
    assert code == 0
    state = json.loads(out)
    assert state["type"] == "state" and state["state"] == "IDLE" and state["seq"] == 0


async def test_url_comes_from_the_environment(server: ProgressServer) -> None:
    """PROGRESS_URL sets --url."""
    code, out, _ = await run_ctl("status", env={"PROGRESS_URL": server.url})
    assert code == 0 and out.startswith("IDLE")


async def test_start_wait_prints_each_state_and_exits_0_on_success(
    server: ProgressServer,
) -> None:
    """start --wait: STARTING (and who started it), IN_PROGRESS, ALMOST_DONE, SUCCESS;
    exit status 0."""
    code, out, err = await run_ctl("--url", server.url, "--name", "alice@laptop", "start", "--wait")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "STARTING",
        "IN_PROGRESS",
        "ALMOST_DONE",
        "SUCCESS",
    ]
    assert len({line.split()[2] for line in lines}) == 1  # one calculation id
    assert re.fullmatch(
        r"STARTING \(calculation \w+, seq 1, at \d\d:\d\d:\d\d, started by alice@laptop\)",
        lines[0],
    )


async def test_start_wait_exits_1_on_canceled() -> None:
    """start --wait while another client cancels: ends on CANCELED, exit status 1."""
    async with ProgressServer(port=0, step_seconds=0.5 * TIME_FACTOR) as server:
        watcher, _, _ = await join(server.url)
        process = await ctl("--url", server.url, "start", "--wait", "--json")
        starting = await recv_type(watcher, "state")
        assert starting["state"] == "STARTING"
        await send_json(watcher, {"action": "cancel"})
        code, out, err = await finish(process)
        await watcher.close()
    assert (code, err) == (1, "")
    states = [json.loads(line)["state"] for line in out.splitlines()]
    assert states[0] == "STARTING" and states[-1] == "CANCELED"


async def test_start_and_cancel_without_wait() -> None:
    """start prints the new id; cancel prints the same id."""
    async with ProgressServer(port=0, step_seconds=2.0 * TIME_FACTOR) as server:
        code, out, _ = await run_ctl("--url", server.url, "start")
        assert code == 0 and out.startswith("started calculation ")
        calculation_id = out.split()[-1]
        code, out, _ = await run_ctl("--url", server.url, "cancel")
        assert (code, out.strip()) == (0, f"canceled calculation {calculation_id}")


@pytest.mark.parametrize(("args", "words"), [(["cancel"], "no running calculation")])
async def test_refused_action_prints_the_server_error_and_exits_1(
    server: ProgressServer, args: list[str], words: str
) -> None:
    """A refused action: the server's sentence on stderr, exit status 1."""
    code, out, err = await run_ctl("--url", server.url, *args)
    assert code == 1
    assert out == ""
    assert err.startswith("progress-ctl: the server refused to cancel: ")
    assert words in err


async def test_start_while_running_is_refused() -> None:
    """A second start while one runs: already running on stderr, exit status 1."""
    async with ProgressServer(port=0, step_seconds=2.0 * TIME_FACTOR) as server:
        code, _, _ = await run_ctl("--url", server.url, "start")
        assert code == 0
        code, out, err = await run_ctl("--url", server.url, "start")
        assert (code, out) == (1, "")
        assert "already running" in err


async def test_watch_json_lines_until_done(server: ProgressServer) -> None:
    """watch --json --until-done: the current state, then each change, then exit 0."""
    process = await ctl("--url", server.url, "watch", "--json", "--until-done")
    assert process.stdout is not None
    first = json.loads(await asyncio.wait_for(process.stdout.readline(), TIMEOUT))
    assert first["state"] == "IDLE"
    await run_ctl("--url", server.url, "start")
    code, out, err = await finish(process)
    assert (code, err) == (0, "")
    messages = [json.loads(line) for line in out.splitlines()]
    assert [m["state"] for m in messages] == ["STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"]
    assert [m["seq"] for m in messages] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "args", [["status"], ["start", "--wait"], ["cancel"], ["watch"], ["history"]]
)
async def test_nothing_listening_exits_3_with_one_line(args: list[str]) -> None:
    """No server: one clear line on stderr, exit status 3, no traceback."""
    url = f"ws://127.0.0.1:{free_port()}/progress"
    code, out, err = await run_ctl("--url", url, *args)
    assert code == 3
    assert out == ""
    assert err == f"progress-ctl: cannot connect to {url}: connection refused\n"


async def test_a_refused_connection_exits_4_with_the_servers_sentence(
    server: ProgressServer,
) -> None:
    """A wrong path: every command stops at once (even those that reconnect), exit
    status 4, and the server's sentence, which names the right path, on stderr."""
    url = server.url.removesuffix("/progress")
    commands = [["status", "--json"], ["start", "--wait"], ["watch"]]
    results = await asyncio.gather(*(run_ctl("--url", url, *args) for args in commands))
    sentence = await not_found_sentence(server.port, "/")
    assert sentence.startswith("There is nothing at /. The WebSocket endpoint is /progress; ")
    for code, out, err in results:
        assert (code, out) == (4, "")
        assert err == (
            f"progress-ctl: cannot connect to {url}: the server refused the connection "
            f"(HTTP 404): {sentence}\n"
        )


async def test_bad_url_is_a_usage_error() -> None:
    """A URL that is not ws:// or wss:// is refused before anything is tried."""
    code, _, err = await run_ctl("--url", "http://127.0.0.1:3003/", "status")
    assert code == 2
    assert "is not a WebSocket URL" in err
    assert "Traceback" not in err


async def test_token_from_the_environment_and_a_clear_refusal() -> None:
    """PROGRESS_TOKEN lets progress-ctl in; a wrong one: one line, exit status 4."""
    async with ProgressServer(port=0, token="t0ken") as server:
        code, out, _ = await run_ctl("--url", server.url, "status", env={"PROGRESS_TOKEN": "t0ken"})
        assert code == 0 and out.startswith("IDLE")
        code, out, err = await run_ctl("--url", server.url, "--token", "nope", "status")
        assert (code, out) == (4, "")
        assert err == (
            f"progress-ctl: cannot connect to {server.url}: "
            "the server refused the token (HTTP 401)\n"
        )


# Against a hostile server: every command, every case, at once.

COMMANDS = [
    ("status",),
    ("status", "--json"),
    ("start",),
    ("start", "--wait"),
    ("cancel",),
    ("watch",),
    ("watch", "--until-done"),
    ("history",),
]


@dataclass(frozen=True)
class Expected:
    """What a command must do against one case.

    Attributes:
        code: The exit status.
        sentence: How the last line on stderr starts, if one is due.
        interrupt: When (given stdout and stderr so far) to press Ctrl-C, for a
            command that would follow the server for ever.
    """

    code: int
    sentence: str | None = None
    interrupt: Callable[[str, str], bool] | None = None


def expected(case: Case, command: tuple[str, ...], url: str) -> Expected:
    name = command[0]
    broken = "the server sent invalid messages ("
    if case.invalid and not case.valid_first:
        return Expected(3, f"progress-ctl: cannot connect to {url}: {broken}")
    if case.invalid:  # a valid state first, then the connection is given up
        if name == "status":
            return Expected(0)
        if name == "watch":
            return Expected(130, interrupt=lambda out, err: f"connection lost: {broken}" in err)
        return Expected(
            3, f"progress-ctl: lost the connection before the server answered: {broken}"
        )
    if name == "watch" and "--until-done" in command:
        return Expected(0 if case.last_state == "SUCCESS" else 1)
    if name == "watch":
        return Expected(130, interrupt=lambda out, err: f"{case.last_state} (" in out)
    return Expected(0)


async def run_ctl_until(
    *args: str, interrupt: Callable[[str, str], bool] | None
) -> tuple[int, str, str]:
    """Run progress-ctl; press Ctrl-C (SIGINT) once `interrupt` holds, if given.

    A process still running at the deadline is made to say where it is (its signal
    masks, and its Python stack through faulthandler) before the test fails.
    """
    process = await ctl(*args, env={"PYTHONFAULTHANDLER": "1"})
    assert process.stdout is not None and process.stderr is not None
    out: list[str] = []
    err: list[str] = []
    interrupted = False

    async def pump(stream: asyncio.StreamReader, lines: list[str]) -> None:
        nonlocal interrupted
        async for line in stream:
            lines.append(line.decode())
            if interrupt and not interrupted and interrupt("".join(out), "".join(err)):
                interrupted = True
                process.send_signal(signal.SIGINT)

    try:
        async with asyncio.timeout(2 * TIMEOUT):
            await asyncio.gather(pump(process.stdout, out), pump(process.stderr, err))
            code = await process.wait()
    except TimeoutError:
        pressed = "after Ctrl-C" if interrupted else "and Ctrl-C was not pressed"
        where = await _where_is(process)
        raise AssertionError(
            f"progress-ctl {' '.join(args)} still ran after {2 * TIMEOUT:g} s {pressed}:\n"
            f"stdout: {''.join(out)!r}\nstderr: {''.join(err)!r}\n{where}"
        ) from None
    finally:
        if process.returncode is None:
            process.kill()
    return code, "".join(out), "".join(err)


async def _where_is(process: asyncio.subprocess.Process) -> str:
    """A stuck process's signal state and, through faulthandler (SIGABRT), its stack."""
    try:
        with open(f"/proc/{process.pid}/status") as file:  # noqa: ASYNC230 - /proc: no disk
            status = file.read()
    except OSError:
        status = ""
    masks = " ".join(line for line in status.splitlines() if line.startswith("Sig"))
    process.send_signal(signal.SIGABRT)
    stack = b""
    if process.stderr is not None:
        try:
            async with asyncio.timeout(TIMEOUT):
                stack = await process.stderr.read()
        except TimeoutError:
            pass
    return f"signals: {masks}\nstack: {stack.decode(errors='replace')}"


def printable_lines(text: str) -> bool:
    return all(line.isprintable() for line in text.splitlines())


@pytest.mark.parametrize("case_name", list(COMBINED_CASES))
async def test_every_command_survives_a_hostile_server(case_name: str) -> None:
    """Each command against the case: its exit status, a sentence and never a traceback,
    no control character from the server on stdout, no dropped state shown. (One test a
    case, so that the cases run side by side: each costs 8 processes.)"""
    limit = asyncio.Semaphore(2 * (os.cpu_count() or 1))
    case = COMBINED_CASES[case_name]

    async def check(server: HostileServer, command: tuple[str, ...]) -> None:
        want = expected(case, command, server.url)
        async with limit:
            code, out, err = await run_ctl_until(
                "--url", server.url, *command, interrupt=want.interrupt
            )
        where = f"{case_name}, {' '.join(command)}:\nstdout: {out!r}\nstderr: {err!r}"
        assert code == want.code, where
        assert "Traceback" not in err, where
        assert printable_lines(out) and printable_lines(err), where
        assert all(line.startswith("progress-ctl: ") for line in err.splitlines()), where
        if want.sentence is not None:
            assert err.splitlines()[-1].startswith(want.sentence), where
            assert out == "", where
        if want.code == 0 and command == ("status", "--json"):
            assert json.loads(out)["type"] == "state", where
        for text in case.hidden:
            assert text not in out + err, where
        if command[0] in ("watch", "history") and not case.invalid:
            for text in case.shown:
                assert text in out, where

    async with HostileServer(case.script) as server:
        results = await asyncio.gather(
            *(check(server, command) for command in COMMANDS),
            return_exceptions=True,  # every process ends before the test does
        )
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        raise failures[0]


async def test_a_cafile_that_is_not_pem_is_a_usage_error(tmp_path: Path) -> None:
    """--cafile with a file that holds no certificate: a usage error naming it, exit 2."""
    cafile = tmp_path / "x.txt"
    cafile.write_text("not a certificate\n")
    url = "wss://127.0.0.1:1/progress"
    code, out, err = await run_ctl("--url", url, "--cafile", str(cafile), "status")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == (
        f"Error: Invalid value for --cafile: {cafile} holds no PEM certificate."
    )
    assert "Traceback" not in err


async def test_wss_against_a_plain_port_is_one_sentence(server: ProgressServer) -> None:
    """A wss:// URL on a ws:// port: the sentence says so, exit status 3, whether the
    command reconnects or not."""
    url = server.url.replace("ws://", "wss://")
    results = await asyncio.gather(run_ctl("--url", url, "status"), run_ctl("--url", url, "watch"))
    for code, out, err in results:
        assert (code, out) == (3, "")
        assert err == (
            f"progress-ctl: cannot connect to {url}: the TLS handshake failed: "
            "the server does not speak TLS on this port (is it ws://?)\n"
        )


async def readline(process: asyncio.subprocess.Process) -> str:
    """The next line of a running progress-ctl's stdout; fails the test if none comes."""
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
    assert line, "progress-ctl ended"
    return line.decode()


async def test_a_server_restart_ends_wait_and_until_done_with_status_1() -> None:
    """The server restarts mid-run: start --wait and watch --until-done both reconnect,
    see that their calculation is gone, say so and exit 1, rather than wait for ever."""
    port = free_port()
    first = ProgressServer(port=port, step_seconds=5.0 * TIME_FACTOR)
    await first.start()
    try:
        watcher = await ctl("--url", first.url, "watch", "--until-done")
        assert (await readline(watcher)).startswith("IDLE ")
        starter = await ctl("--url", first.url, "start", "--wait")
        started = await readline(starter)
        assert started.startswith("STARTING ") and await readline(watcher) == started
        calculation_id = started.split()[2].rstrip(",")
    finally:
        await first.close()
    async with ProgressServer(port=port, step_seconds=STEP):
        results = await asyncio.gather(finish(watcher), finish(starter))
    for code, out, err in results:
        assert (code, out) == (1, "")
        assert err.splitlines() == [
            "progress-ctl: connection lost: the server is going away (1001); reconnecting",
            f"progress-ctl: calculation {calculation_id} is gone from the server "
            "(it restarted?); the state is now IDLE",
        ]


async def test_every_command_speaks_json_and_names_who() -> None:
    """--json on every command prints the protocol's objects (ack, state, history, and a
    refusal's error, also said on stderr); the human lines say who started and who
    canceled, and history is a table, newest first."""
    async with ProgressServer(port=0, step_seconds=5.0 * TIME_FACTOR) as server:
        url = server.url
        # Nothing finishes before the cancel: the history stays empty until then.
        empty, (code, out, _) = await asyncio.gather(
            run_ctl("--url", url, "history"),
            run_ctl("--url", url, "--name", "alice@laptop", "start", "--json"),
        )
        assert empty == (0, "no finished calculation yet\n", "")
        ack = json.loads(out)
        calculation_id = ack["calculation_id"]
        assert code == 0 and ack == {
            "type": "ack",
            "action": "start",
            "calculation_id": calculation_id,
            "request_id": ack["request_id"],
        }
        code, out, err = await run_ctl("--url", url, "start", "--json")
        assert code == 1
        assert json.loads(out)["type"] == "error"
        assert json.loads(out)["code"] == "already_running"
        assert err.startswith("progress-ctl: the server refused to start: ")

        code, out, _ = await run_ctl("--url", url, "--name", "bob@desk", "cancel", "--json")
        assert code == 0
        assert json.loads(out)["type"] == "ack"
        assert json.loads(out)["calculation_id"] == calculation_id

        status, history, history_json = await asyncio.gather(
            run_ctl("--url", url, "status"),
            run_ctl("--url", url, "history"),
            run_ctl("--url", url, "history", "--json"),
        )
    assert re.fullmatch(
        rf"CANCELED \(calculation {calculation_id}, seq 2, at \d\d:\d\d:\d\d, "
        r"canceled by bob@desk during STARTING\)\n",
        status[1],
    )
    header, row = history[1].splitlines()
    assert header.split("  ")[0] == "CALCULATION"
    assert re.fullmatch(
        rf"{calculation_id}  \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d  +\d+\.\d s  "
        r"CANCELED during STARTING  alice@laptop  bob@desk",
        row,
    )
    assert header.index("OUTCOME") == row.index("CANCELED")
    (run,) = json.loads(history_json[1])["runs"]
    assert run["calculation_id"] == calculation_id
    assert run["started_by"]["name"] == "alice@laptop"
    assert run["canceled_by"]["name"] == "bob@desk"


async def test_help_shows_every_command_and_the_exit_statuses() -> None:
    """--help: each subcommand's whole first sentence, and what each exit status means."""
    code, out, _ = await run_ctl("--help", env={"COLUMNS": "80"})
    assert code == 0
    commands = out[out.index("Commands:") :].splitlines()[1:]
    assert [line.split()[0] for line in commands] == [
        "cancel",
        "history",
        "start",
        "status",
        "watch",
        "who",
    ]
    assert all(line.endswith(".") and not line.endswith("...") for line in commands), commands
    statuses = [line.split()[0] for line in out.splitlines() if re.match(r"    \d+ ", line)]
    assert statuses == ["0", "1", "2", "3", "4", "130", "143"]
    assert all(len(line) <= 80 for line in out.splitlines())


async def test_a_bad_value_blames_the_variable_only_when_it_came_from_there() -> None:
    """A typo on the command line names the option; a bad PROGRESS_URL names the variable."""
    typed, from_env = await asyncio.gather(
        run_ctl("--url", "http://x", "status"),
        run_ctl("status", env={"PROGRESS_URL": "http://x"}),
    )
    sentence = "'http://x' is not a WebSocket URL like ws://127.0.0.1:3003/progress."
    assert typed[0] == from_env[0] == 2
    assert typed[2].splitlines()[-1] == f"Error: Invalid value for '--url': {sentence}"
    assert from_env[2].splitlines()[-1] == (
        f"Error: Invalid value for '--url' (env var: 'PROGRESS_URL'): {sentence}"
    )


async def test_a_url_of_an_http_endpoint_is_said_so(server: ProgressServer) -> None:
    """--url .../healthz answers HTTP 200: the sentence points at the path, exit 4."""
    url = server.url.replace("/progress", "/healthz")
    code, _, err = await run_ctl("--url", url, "status")
    assert code == 4
    assert "answered HTTP 200 instead of opening a WebSocket" in err


async def test_a_token_no_header_can_carry_is_a_usage_error() -> None:
    """A token with a space or a non-ASCII character could never be sent: exit 2."""
    code, _, err = await run_ctl("--token", "two words", "status")
    assert code == 2 and "visible ASCII" in err
    code, _, err = await run_ctl("status", env={"PROGRESS_TOKEN": "密码"})
    assert code == 2 and "visible ASCII" in err


async def test_the_token_in_a_url_is_never_printed() -> None:
    """With ?token= in --url and no server there, the sentence names the URL, not the
    token."""
    url = f"ws://127.0.0.1:{free_port()}/progress?token=s3cr3t-T0k3n"
    code, _, err = await run_ctl("--url", url, "status")
    assert code == 3
    assert "s3cr3t" not in err and "token=<redacted>" in err


# Several URLs: failover.


async def test_one_shot_commands_go_through_the_next_url_when_the_first_is_dead() -> None:
    """PROGRESS_URL holds two URLs, the first dead: start, status, history and cancel
    all succeed through the second, and say nothing of the first."""
    async with ProgressServer(port=0, step_seconds=5.0 * TIME_FACTOR) as server:
        env = {"PROGRESS_URL": f"ws://127.0.0.1:{free_port()}/progress {server.url}"}
        code, out, err = await run_ctl("start", env=env)
        assert (code, err) == (0, "") and out.startswith("started calculation ")
        calculation_id = out.split()[-1]
        (code, out, err), history = await asyncio.gather(
            run_ctl("status", env=env), run_ctl("history", env=env)
        )
        assert (code, err) == (0, "")
        assert out.startswith(f"STARTING (calculation {calculation_id}, ")
        assert history == (0, "no finished calculation yet\n", "")
        code, out, err = await run_ctl("cancel", env=env)
        assert (code, out, err) == (0, f"canceled calculation {calculation_id}\n", "")


async def test_the_first_url_is_tried_first(server: ProgressServer) -> None:
    """--url given twice, both servers up (two unrelated ones here): the first answers."""
    async with ProgressServer(port=0, step_seconds=5.0 * TIME_FACTOR) as first:
        assert (await run_ctl("--url", first.url, "start"))[0] == 0
        code, out, _ = await run_ctl("--url", first.url, "--url", server.url, "status")
    assert code == 0 and out.startswith("STARTING ")


async def test_no_url_reachable_names_each_and_exits_3_or_4(server: ProgressServer) -> None:
    """Every URL fails: one sentence naming each with its reason; exit 4 only if each
    refused for good, 3 if one may come back."""
    dead, wrong = f"ws://127.0.0.1:{free_port()}/progress", server.url.removesuffix("/progress")
    sentence = await not_found_sentence(server.port, "/")
    refusal = f"the server refused the connection (HTTP 404): {sentence}"
    results = await asyncio.gather(
        *(
            run_ctl(*urls, command)
            for command in ("status", "watch")
            for urls in (("--url", dead, "--url", wrong), ("--url", wrong, "--url", wrong + "/"))
        )
    )
    for dead_and_wrong, both_wrong in zip(results[::2], results[1::2], strict=True):
        assert dead_and_wrong == (
            3,
            "",
            f"progress-ctl: cannot connect to {dead}: connection refused; "
            f"nor to {wrong}: {refusal}\n",
        )
        assert both_wrong[:2] == (4, "")
        assert both_wrong[2].startswith(f"progress-ctl: cannot connect to {wrong}: ")
        assert f"; nor to {wrong}/: " in both_wrong[2]


async def test_watch_and_start_wait_follow_the_run_across_a_sigkill(
    redis_url: str, redis_prefix: str
) -> None:
    """Two instances sharing the calculation; watch --until-done and start --wait on
    the first, which is SIGKILLed mid-run: both move to the second at once, say so on
    stderr, and follow the same run to SUCCESS, each state once."""
    async with instances(2, redis_url, redis_prefix, step=0.3 * TIME_FACTOR) as servers:
        first, second = servers
        urls = ("--url", first.url, "--url", second.url)
        watcher = await ctl(*urls, "watch", "--until-done")
        assert (await readline(watcher)).startswith("IDLE ")
        starter = await ctl(*urls, "start", "--wait")
        started = await readline(starter)
        assert started.startswith("STARTING ") and await readline(watcher) == started
        first.signal(signal.SIGKILL)
        results = await asyncio.gather(finish(watcher), finish(starter))
    calculation_id = started.split()[2].rstrip(",")
    for code, out, err in results:
        assert code == 0
        lines = [started, *out.splitlines()]
        assert [line.split()[0] for line in lines] == [
            "STARTING",
            "IN_PROGRESS",
            "ALMOST_DONE",
            "SUCCESS",
        ]
        assert all(f"calculation {calculation_id}," in line for line in lines)
        assert err.splitlines() == [
            f"progress-ctl: connection to {first.url} lost: the connection was lost; reconnecting",
            f"progress-ctl: reconnected to {second.url}",
        ]


async def test_an_unreachable_store_exits_3(redis_prefix: str) -> None:
    """The server's Redis is away: the action gets `unavailable`, a "not now": exit 3
    (retrying may work), not 1 (refused)."""
    async with RedisServer() as redis:
        backend = RedisBackend(redis.url, prefix=redis_prefix)
        async with ProgressServer(port=0, backend=backend) as server:
            await redis.stop(kill=True)
            code, _, err = await run_ctl("--url", server.url, "start")
    assert code == 3
    assert "unreachable" in err and "Traceback" not in err


async def test_a_reader_that_goes_away_ends_the_command_quietly(server: ProgressServer) -> None:
    """`progress-ctl watch | head -n 1`: once head has its line, watch ends with status 0
    and nothing on stderr at its next line, not a BrokenPipeError."""
    script = (
        f"{command('progress-ctl')} --url {server.url} watch --json | head -n 1; "
        'echo "watch ended with ${PIPESTATUS[0]}" >&2'
    )
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
    assert json.loads(first)["state"] == "IDLE"
    await http_request(server.port, "POST", "/start")  # the next line has nowhere to go
    _, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert err.decode() == "watch ended with 0\n"


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
async def test_watch_ended_by_a_signal_closes_its_connection_cleanly(
    signum: int, status: int
) -> None:
    """SIGTERM (kill, timeout, a service manager) or Ctrl-C ends watch with the status
    its --help gives, silently, after closing its WebSocket with 1000: the server logs
    a normal close, not 1006 (a connection dropped without a closing handshake)."""
    async with ServerProcess() as server:
        process = await ctl("--url", server.url, "watch")
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        assert first.decode().startswith("IDLE (seq 0, at ")
        process.send_signal(signum)
        code, _, err = await finish(process)
        assert (code, err) == (status, "")
        async with asyncio.timeout(TIMEOUT):
            while not (closes := [line for line in server.lines if " disconnected, " in line]):
                await asyncio.sleep(0.02)
        [close] = closes
        assert " disconnected, code 1000 " in close, close
