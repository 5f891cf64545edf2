"""``progress-ctl``: drive and watch the shared calculation from scripts.

The exit status tells a script what happened (the table is in ``--help`` and
docs/clients.md): 0 done, 1 refused by the server or the calculation CANCELED or gone,
2 usage error, 3 the server cannot be reached (at any of the URLs) or the connection
was lost, 4 the server refused the connection for good (at every URL), 130
interrupted (Ctrl-C), 143 terminated (SIGTERM); either way the connection is closed
cleanly first (code 1000). Whatever the server sends, a failure ends with one sentence on stderr,
never a traceback, and nothing printed carries a control character from the server.

With several URLs, a one-shot command tries each in turn until one answers, and
``watch`` and ``start --wait`` fail over to the next one when their connection is lost.

With ``--json``, stdout carries the protocol's own objects, one JSON line each (the
shapes of docs/protocol.md): ``state``, ``ack``, ``history``, and the ``error`` object
of an action the server refused.
"""

from __future__ import annotations

import asyncio
import io
import json
import locale
import logging
import os
import signal
import sys
from collections.abc import AsyncGenerator, Coroutine
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, NoReturn

import click

from progress_protocol import __version__
from progress_protocol.messages import (
    Ack,
    Command,
    Error,
    ErrorCode,
    History,
    Presence,
    StateMessage,
    to_dict,
)
from progress_protocol.states import Run, State, StateSnapshot

from .client import NotConnected, ProgressClient
from .events import (
    ActionAccepted,
    ClientEvent,
    Closed,
    Connected,
    Connecting,
    ConnectionLost,
    HistoryReceived,
    PresenceChanged,
    ServerError,
    StateReceived,
    Waiting,
)
from .notifications import EndWatch, alert, ended
from .options import check_connection_options, connection_options
from .reconnect import ReconnectPolicy
from .wording import (
    attribution,
    canceled,
    cells,
    clock_time,
    describe_exception,
    duration,
    name_of,
    person_name,
    printable,
    started,
    watching,
)

__all__ = ["main"]

EXIT_OK = 0
#: The server refused the action, or the calculation ended CANCELED or vanished.
EXIT_REFUSED = 1
#: click's own status for a usage error.
EXIT_USAGE = 2
#: The server cannot be reached, the connection was lost, or the server broke down
#: (invalid messages, no answer in time): trying again later may work.
EXIT_UNREACHABLE = 3
#: The server refused the connection for good (a wrong path, token or host) or its
#: certificate is not trusted: the settings must change first.
EXIT_REJECTED = 4
EXIT_INTERRUPTED = 130
#: Ended by SIGTERM (128 + 15, as a shell says it), after closing the connection
#: cleanly, as Ctrl-C does.
EXIT_TERMINATED = 143

#: How long a one-shot command waits for the server's answer.
ANSWER_TIMEOUT = 10.0


class Failure(Exception):
    """Ends the command with one line on stderr and an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def done_by(snapshot: StateSnapshot) -> str | None:
    """Who did it, in the TUI's words: "started by alice@laptop", "canceled by bob@desk
    during IN_PROGRESS"; None for the timer's own transitions."""
    by = snapshot.by
    if snapshot.state is State.CANCELED:
        during = snapshot.canceled_during
        return canceled(by, during) if by is not None or during is not None else None
    if by is None:
        return None
    return started(by) if snapshot.state is State.STARTING else attribution(by)


def describe(snapshot: StateSnapshot) -> str:
    """One line for a person: the state, its calculation, seq, time and who did it."""
    parts = [f"seq {snapshot.seq}", f"at {clock_time(snapshot.changed_at)}"]
    if snapshot.calculation_id:
        parts.insert(0, f"calculation {printable(snapshot.calculation_id)}")
    by = done_by(snapshot)
    if by:
        parts.append(by)
    return f"{snapshot.state.value} ({', '.join(parts)})"


def emit(snapshot: StateSnapshot, as_json: bool) -> None:
    if as_json:
        print_json(to_dict(StateMessage(snapshot)))
    else:
        click.echo(describe(snapshot))


def print_json(payload: dict[str, Any]) -> None:
    # ensure_ascii: whatever the server's names hold, the line is plain ASCII.
    click.echo(json.dumps(payload))


def outcome(run: Run) -> str:
    during = f" during {run.canceled_during.value}" if run.canceled_during else ""
    return f"{run.outcome.value}{during}"


HISTORY_COLUMNS = ("CALCULATION", "STARTED", "DURATION", "OUTCOME", "STARTED BY", "CANCELED BY")


def history_table(runs: tuple[Run, ...]) -> list[str]:
    """The runs as aligned lines under a header, in the server's order (newest first)."""
    if not runs:
        return ["no finished calculation yet"]
    rows = [
        (
            printable(run.calculation_id),
            clock_time(run.started_at, "%Y-%m-%d %H:%M:%S"),
            duration(run.seconds),
            outcome(run),
            name_of(run.started_by) if run.started_by else "",
            name_of(run.canceled_by) if run.canceled_by else "",
        )
        for run in runs
    ]
    table = [HISTORY_COLUMNS, *rows]
    widths = [max(len(row[column]) for row in table) for column in range(len(HISTORY_COLUMNS))]
    return [
        "  ".join(
            # Durations line up on their right, like numbers.
            cell.rjust(width) if column == 2 else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    ]


def gone(calculation_id: str, snapshot: StateSnapshot) -> Failure:
    """The calculation followed is not the server's any more: it restarted (or the end
    was missed while disconnected and another run began)."""
    return Failure(
        f"calculation {calculation_id} is gone from the server (it restarted?); "
        f"the state is now {snapshot.state.value}",
        EXIT_REFUSED,
    )


def refused(action: str, error: Error, as_json: bool) -> Failure:
    """An action the server refused: its error object on stdout with --json, and its
    sentence on stderr in any case."""
    if as_json:
        print_json(to_dict(error))
    # The shared store out of reach: not a "no", a "not now", which retrying may mend.
    status = EXIT_UNREACHABLE if error.code == ErrorCode.UNAVAILABLE else EXIT_REFUSED
    return Failure(f"the server refused to {action}: {error.message}", status)


async def follow(client: ProgressClient) -> AsyncGenerator[ClientEvent, None]:
    """The client's events, failing cleanly: unreachable at first, or lost for good.

    The server counts as reached once it sent a valid state: one that says hello and
    then only sends invalid messages is as useless as one that does not answer. Until
    then every URL is tried once, in turn; when none can be reached, the command ends
    with :data:`EXIT_REJECTED` if each refused for good (HTTP 401, 403, 404...), and
    with :data:`EXIT_UNREACHABLE` otherwise. Once reached, a client that reconnects
    fails over to the next URL, and says so on stderr.
    """
    reached = False
    several = len(client.urls) > 1
    trying = client.url
    #: Why each URL could not be reached, and whether that was a refusal for good.
    failures: dict[str, tuple[str, bool]] = {}
    async with aclosing(client.events()) as events:
        async for event in events:
            match event:
                case Connecting(url=url):
                    trying = url
                case Connected(url=url) if reached and several:
                    click.echo(f"progress-ctl: reconnected to {url}", err=True)
                case StateReceived():
                    reached = True
                case Waiting(error=error, permanent=permanent) if not reached:
                    failures[trying] = (error, permanent)
                    if len(failures) == len(client.urls):
                        raise unreachable(failures)
                case ConnectionLost(url=url, reason=reason) if reached and client.reconnect:
                    # Without reconnecting, Closed says the same just after.
                    where = f" to {url}" if several else ""
                    click.echo(
                        f"progress-ctl: connection{where} lost: {reason}; reconnecting", err=True
                    )
                case Closed(reason=reason, permanent=permanent) if reason != "closed":
                    if not reached:
                        failures[trying] = (reason, permanent)
                        raise unreachable(failures)
                    status = EXIT_REJECTED if permanent else EXIT_UNREACHABLE
                    raise Failure(f"lost the connection: {reason}", status)
            yield event


def unreachable(failures: dict[str, tuple[str, bool]]) -> Failure:
    """No URL could be reached: why, for each; refused for good if each was."""
    refused = all(permanent for _, permanent in failures.values())
    status = EXIT_REJECTED if refused else EXIT_UNREACHABLE
    reasons = [f"{url}: {reason}" for url, (reason, _) in failures.items()]
    return Failure("cannot connect to " + "; nor to ".join(reasons), status)


@dataclass(frozen=True)
class Target:
    """Where and how to connect, from the group's options."""

    urls: tuple[str, ...]
    token: str | None = None
    cafile: str | None = None
    name: str | None = None


def make_client(target: Target, *, reconnect: bool) -> ProgressClient:
    return ProgressClient(
        target.urls,
        reconnect=reconnect,
        policy=ReconnectPolicy(initial=0.5, cap=5.0),
        token=target.token,
        name=target.name,
        cafile=target.cafile,
        agent="progress-ctl",
    )


class Terminated(Exception):
    """SIGTERM came: the command was cancelled, its connection closed (code 1000)."""


async def until_terminated(command: Coroutine[Any, Any, int]) -> int:
    """Run ``command``; SIGTERM cancels it as Ctrl-C does, so that the connection is
    closed with 1000 (normal) rather than dropped (the server would see 1006).

    Raises:
        Terminated: If SIGTERM came.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        if not terminated:  # a second SIGTERM must not cut the closing handshake short
            terminated = True
            task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await command
    except asyncio.CancelledError:
        if terminated:
            raise Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def run(command: Coroutine[Any, Any, int]) -> NoReturn:
    try:
        status = asyncio.run(until_terminated(command))
    except Terminated:
        sys.exit(EXIT_TERMINATED)
    except Failure as failure:
        fail(failure.message, failure.status)
    except NotConnected as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except TimeoutError:
        fail(f"no answer from the server within {ANSWER_TIMEOUT:.0f} s", EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, to anyone. As Python's
        # documentation advises, stdout is pointed at devnull so its flush at exit
        # raises nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_OK)
    except Exception as exc:
        # A bug, or something the server sent that got past the checks: still one line.
        fail(f"stopped on an unexpected error ({describe_exception(exc)})", EXIT_UNREACHABLE)
    sys.exit(status)


def fail(message: str, status: int) -> NoReturn:
    """One line on stderr, then exit: the server's words in it are made printable."""
    click.echo(f"progress-ctl: {printable(message)}", err=True)
    sys.exit(status)


class OneLineFormatter(logging.Formatter):
    """Log records for a script's stderr: one printable line each, no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message} ({describe_exception(record.exc_info[1])})"
        return f"progress-ctl: {printable(message)}"


def log_to_stderr() -> None:
    """Warnings (skipped messages, asyncio's and websockets' own) as one line each.

    Without a handler, Python's last resort would print them with their tracebacks.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    # Whatever a server sends, printing it must not raise UnicodeEncodeError on a
    # terminal that is not UTF-8.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options
@click.version_option(__version__, prog_name="progress-ctl")
@click.pass_context
def main(
    ctx: click.Context, urls: tuple[str, ...], token: str | None, cafile: str | None, name: str
) -> None:
    """Drive and watch a progress-server's calculation from scripts.

    With --json, every command prints the protocol's own objects on stdout, one JSON
    line each: a state per line (status, watch, start --wait), the ack (start, cancel),
    the history object (history), and the error object of an action the server
    refuses. A failure is also said in one sentence on stderr.

    \b
    Exit status:
      0    done (start --wait, watch --until-done: the calculation succeeded)
      1    the server refused the action, or the calculation was canceled or
           is gone (the server restarted)
      2    usage error
      3    the server cannot be reached (at any --url), the connection was
           lost, or its shared store is unreachable for now: try again later
      4    the server refused the connection (at every --url; wrong path,
           token or host: its sentence on stderr), or its certificate is not
           trusted
      130  interrupted (Ctrl-C)
      143  terminated (SIGTERM)

    Interrupted or terminated, the connection is closed cleanly first (code 1000).
    """
    log_to_stderr()
    check_connection_options(urls, token, cafile)
    ctx.obj = Target(urls, token, cafile, name)


@main.command(short_help="Print the current state.")
@click.option("--json", "as_json", is_flag=True, help="Print the state message as JSON.")
@click.pass_obj
def status(target: Target, as_json: bool) -> None:
    """Print the current state: who started or canceled it, and when."""
    run(_status(target, as_json))


async def _status(target: Target, as_json: bool) -> int:
    client = make_client(target, reconnect=False)
    async with asyncio.timeout(ANSWER_TIMEOUT), aclosing(follow(client)) as events:
        async for event in events:
            if isinstance(event, StateReceived):
                emit(event.snapshot, as_json)
                await client.close()
                return EXIT_OK
    raise Failure("the server closed the connection before sending its state", EXIT_UNREACHABLE)


@main.command(short_help="Start a calculation; --wait follows it to its end.")
@click.option("--wait", is_flag=True, help="Print each state; exit 0 on SUCCESS, 1 on CANCELED.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the ack as JSON; with --wait, the state messages instead, one per line.",
)
@click.pass_obj
def start(target: Target, wait: bool, as_json: bool) -> None:
    """Start a calculation and print its id; with --wait, follow it to its end
    (reconnecting if need be)."""
    run(_act(target, "start", wait=wait, as_json=as_json))


@main.command(short_help="Cancel the running calculation.")
@click.option("--json", "as_json", is_flag=True, help="Print the ack as JSON.")
@click.pass_obj
def cancel(target: Target, as_json: bool) -> None:
    """Cancel the running calculation and print its id."""
    run(_act(target, "cancel", wait=False, as_json=as_json))


async def _act(target: Target, action: Command, *, wait: bool, as_json: bool) -> int:
    client = make_client(target, reconnect=wait)
    request_id: str | None = None
    calculation_id: str | None = None
    shown: StateSnapshot | None = None
    # Until the answer, the server has ANSWER_TIMEOUT; then --wait follows the run as
    # long as it takes.
    async with asyncio.timeout(ANSWER_TIMEOUT) as answer, aclosing(follow(client)) as events:
        async for event in events:
            match event:
                case StateReceived(snapshot=snapshot) if request_id is None:
                    request_id = await client.send(action)
                case ConnectionLost(reason=reason) if request_id and calculation_id is None:
                    # Sent or not, the request's fate is unknown: no guess, no retry.
                    raise Failure(
                        f"lost the connection before the server answered: {reason}",
                        EXIT_UNREACHABLE,
                    )
                case ServerError(error=error) if error.request_id == request_id:
                    raise refused(action, error, as_json)
                case ActionAccepted(ack=ack) if ack.request_id == request_id:
                    calculation_id = ack.calculation_id
                    answer.reschedule(None)
                    if not wait:
                        print_accepted(ack, as_json)
                        await client.close()
                        return EXIT_OK
                case StateReceived(snapshot=snapshot) if calculation_id is not None:
                    if snapshot.calculation_id != calculation_id:
                        raise gone(calculation_id, snapshot)
                    if snapshot == shown:
                        continue  # a resync after a reconnect repeats the last state
                    shown = snapshot
                    emit(snapshot, as_json)
                    if snapshot.state.is_final:
                        await client.close()
                        return EXIT_OK if snapshot.state is State.SUCCESS else EXIT_REFUSED
    raise Failure("the server closed the connection before answering", EXIT_UNREACHABLE)


def print_accepted(ack: Ack, as_json: bool) -> None:
    if as_json:
        print_json(to_dict(ack))
    else:
        past = "started" if ack.action == "start" else "canceled"
        click.echo(f"{past} calculation {printable(ack.calculation_id)}")


@main.command(short_help="Print the state, then each change, reconnecting by itself.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one state message each.")
@click.option(
    "--until-done",
    is_flag=True,
    help="Exit at the next SUCCESS (status 0) or CANCELED (status 1); status 1 as well "
    "if the calculation followed is gone (the server restarted).",
)
@click.option(
    "--notify",
    is_flag=True,
    help="When a calculation seen running ends (with --until-done: the one it exits on), "
    "ring the terminal's bell and send a desktop notification (OSC 9 or OSC 777, by "
    "terminal; in tmux 3.3 and later: set -g allow-passthrough on). They go to the "
    "controlling terminal, else to stderr if it is one, else nowhere: never to stdout.",
)
@click.pass_obj
def watch(target: Target, as_json: bool, until_done: bool, notify: bool) -> None:
    """Print the current state, then one line per change; reconnects by itself.

    With --notify, the terminal is told when a run ends: at the end --until-done waits
    for, or at the end of each run seen running while it watches.
    """
    run(_watch(target, as_json, until_done, notify))


def ring(snapshot: StateSnapshot) -> None:
    """The bell and the desktop notification of the end ``snapshot`` says, written to
    the controlling terminal (/dev/tty), else to stderr if it is a terminal, else
    nowhere: a script's stdout stays what it parses, and a log gets no escape sequence.
    A terminal that cannot be written to is not worth failing the command for."""
    sequences = alert(ended(snapshot), os.environ)
    try:
        tty = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY)
    except OSError:  # no controlling terminal (a service, a detached session)
        tty = None
    try:
        if tty is None:
            if sys.stderr.isatty():
                sys.stderr.write(sequences)
                sys.stderr.flush()
            return
        data = sequences.encode(locale.getpreferredencoding(False), errors="replace")
        while data:
            data = data[os.write(tty, data) :]
    except (OSError, ValueError):  # a terminal gone, a stream closed: the end is printed
        pass
    finally:
        if tty is not None:
            os.close(tty)


async def _watch(target: Target, as_json: bool, until_done: bool, notify: bool) -> int:
    client = make_client(target, reconnect=True)
    last: StateSnapshot | None = None
    ends = EndWatch()
    async with aclosing(follow(client)) as events:
        async for event in events:
            if not isinstance(event, StateReceived) or event.snapshot == last:
                continue  # a resync after a reconnect repeats the last state
            snapshot = event.snapshot
            # Within one server the running calculation only ever ends in a final
            # state; another id (after a reconnect) means the server lost it.
            if (
                until_done
                and last is not None
                and last.state.is_running
                and last.calculation_id is not None
                and snapshot.calculation_id != last.calculation_id
            ):
                raise gone(last.calculation_id, snapshot)
            first = last is None
            last = snapshot
            emit(last, as_json)
            seen_coming = ends.seen(last)
            if until_done and not first and last.state.is_final:
                if notify:
                    ring(last)
                await client.close()
                return EXIT_OK if last.state is State.SUCCESS else EXIT_REFUSED
            if notify and seen_coming:
                ring(last)
    return EXIT_OK


@main.command(short_help="Print the last finished calculations, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the history message as JSON.")
@click.pass_obj
def history(target: Target, as_json: bool) -> None:
    """Print the last finished calculations, newest first: when each started, how long
    it ran, how it ended, and who started or canceled it."""
    run(_history(target, as_json))


async def _history(target: Target, as_json: bool) -> int:
    client = make_client(target, reconnect=False)
    request_id: str | None = None
    async with asyncio.timeout(ANSWER_TIMEOUT), aclosing(follow(client)) as events:
        async for event in events:
            match event:
                case StateReceived() if request_id is None:
                    # The server sends its history right after the state anyway; asking
                    # costs one message and serves a server that would not.
                    request_id = await client.send("history")
                case HistoryReceived(runs=runs):
                    if as_json:
                        print_json(to_dict(History(runs)))
                    else:
                        for line in history_table(runs):
                            click.echo(line)
                    await client.close()
                    return EXIT_OK
                case ServerError(error=error) if error.request_id == request_id:
                    raise refused("send its history", error, as_json)
                case ConnectionLost(reason=reason) if request_id is not None:
                    raise Failure(
                        f"lost the connection before the server answered: {reason}",
                        EXIT_UNREACHABLE,
                    )
    raise Failure("the server closed the connection before answering", EXIT_UNREACHABLE)


@main.command(short_help="Print who is connected, and as what.")
@click.option("--json", "as_json", is_flag=True, help="Print the presence message as JSON.")
@click.pass_obj
def who(target: Target, as_json: bool) -> None:
    """Print who is connected to the calculation (over every instance): each person,
    their role, their connections and the kinds of client; then who you are."""
    run(_who(target, as_json))


async def _who(target: Target, as_json: bool) -> int:
    client = make_client(target, reconnect=False)
    me: Connected | None = None
    async with asyncio.timeout(ANSWER_TIMEOUT), aclosing(follow(client)) as events:
        async for event in events:
            match event:
                case Connected():
                    me = event
                case PresenceChanged(presence=presence):
                    if as_json:
                        print_json(to_dict(presence))
                    else:
                        for line in presence_table(presence, me):
                            click.echo(line)
                    await client.close()
                    return EXIT_OK
    raise Failure("the server closed the connection before saying who is here", EXIT_UNREACHABLE)


def presence_table(presence: Presence, me: Connected | None) -> list[str]:
    """ "3 watching: alice, bob (viewer), ci-bot", then a line a person, then "you:
    alice (operator)"."""
    lines = [watching(presence)]
    rows = [
        (
            person_name(person, limit=64),
            printable(person.role),
            f"{person.connections} connection{'' if person.connections == 1 else 's'}",
            ", ".join(printable(kind) for kind in person.clients),
        )
        for person in presence.people
    ]
    if rows:
        widths = [max(cells(row[n]) for row in rows) for n in range(3)]
        for row in rows:
            padded = [
                text + " " * (width - cells(text))
                for text, width in zip(row[:3], widths, strict=True)
            ]
            lines.append(f"  {'  '.join(padded)}  {row[3]}")
    if presence.total > len(presence.people):
        lines.append(f"  and {presence.total - len(presence.people)} more")
    if me is not None and me.role is not None:
        you = printable(me.name) if me.name else "(no name)"
        lines.append(f"you: {you} ({printable(me.role)})")
    return lines
