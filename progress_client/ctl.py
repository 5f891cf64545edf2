"""``progress-ctl``: drive and watch the shared calculation from scripts.

Exit status: 0 done (or SUCCESS), 1 refused by the server (or CANCELED), 2 the server
could not be reached, stopped answering or sent invalid messages (and any usage error),
130 interrupted (Ctrl-C). Whatever the server sends, the command ends with one sentence
on stderr, never a traceback, and prints no control character from the server.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
from collections.abc import AsyncGenerator, Coroutine
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import click

from progress_protocol import __version__
from progress_protocol.messages import StateMessage, to_dict
from progress_protocol.states import State, StateSnapshot

from .client import (
    ActionAccepted,
    ClientEvent,
    Closed,
    ConnectionLost,
    NotConnected,
    ProgressClient,
    ServerError,
    StateReceived,
    Waiting,
)
from .display import describe_exception, printable
from .options import check_connection_options, connection_options
from .reconnect import ReconnectPolicy

__all__ = ["main"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 2
EXIT_INTERRUPTED = 130

#: How long a one-shot command waits for the server's answer.
ANSWER_TIMEOUT = 10.0


class Failure(Exception):
    """Ends the command with one line on stderr and an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def describe(snapshot: StateSnapshot) -> str:
    """One line for a person: the state, its calculation, its seq and time."""
    # The decoder bounds changed_at; a time the platform cannot convert still gets a line.
    try:
        at = time.strftime("%H:%M:%S", time.localtime(snapshot.changed_at))
    except (OverflowError, OSError, ValueError):
        at = "an unknown time"
    calculation_id = snapshot.calculation_id
    calculation = f"calculation {printable(calculation_id)}, " if calculation_id else ""
    return f"{snapshot.state.value} ({calculation}seq {snapshot.seq}, at {at})"


def emit(snapshot: StateSnapshot, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(to_dict(StateMessage(snapshot))))
    else:
        click.echo(describe(snapshot))


async def follow(client: ProgressClient) -> AsyncGenerator[ClientEvent, None]:
    """The client's events, failing cleanly: unreachable at first, or lost for good.

    The server counts as reached once it sent a valid state: one that says hello and
    then only sends invalid messages is as useless as one that does not answer.
    """
    reached = False
    async with aclosing(client.events()) as events:
        async for event in events:
            match event:
                case StateReceived():
                    reached = True
                case Waiting(error=error) if not reached:
                    raise Failure(f"cannot connect to {client.url}: {error}", EXIT_UNREACHABLE)
                case ConnectionLost(reason=reason) if reached and client.reconnect:
                    # Without reconnecting, Closed says the same just after.
                    click.echo(f"progress-ctl: connection lost: {reason}; reconnecting", err=True)
                case Closed(reason=reason) if reason != "closed":
                    where = "" if reached else f" to {client.url}"
                    verb = "lost the connection" if reached else "cannot connect"
                    raise Failure(f"{verb}{where}: {reason}", EXIT_UNREACHABLE)
            yield event


@dataclass(frozen=True)
class Target:
    """Where and how to connect, from the group's options."""

    url: str
    token: str | None = None
    cafile: str | None = None
    name: str | None = None


def make_client(target: Target, *, reconnect: bool) -> ProgressClient:
    return ProgressClient(
        target.url,
        reconnect=reconnect,
        policy=ReconnectPolicy(initial=0.5, cap=5.0),
        token=target.token,
        name=target.name,
        cafile=target.cafile,
    )


def run(command: Coroutine[Any, Any, int]) -> NoReturn:
    try:
        status = asyncio.run(command)
    except Failure as failure:
        fail(failure.message, failure.status)
    except NotConnected as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except TimeoutError:
        fail(f"no answer from the server within {ANSWER_TIMEOUT:.0f} s", EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
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
def main(ctx: click.Context, url: str, token: str | None, cafile: str | None, name: str) -> None:
    """Drive and watch a progress-server's calculation from scripts.

    Exit status: 0 done, 1 refused by the server or CANCELED, 2 server unreachable
    or broken.
    """
    log_to_stderr()
    check_connection_options(url, token, cafile)
    ctx.obj = Target(url, token, cafile, name)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state message as JSON.")
@click.pass_obj
def status(target: Target, as_json: bool) -> None:
    """Print the current state."""
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


@main.command()
@click.option("--wait", is_flag=True, help="Print each state; exit 0 on SUCCESS, 1 on CANCELED.")
@click.option("--json", "as_json", is_flag=True, help="With --wait, print JSON lines.")
@click.pass_obj
def start(target: Target, wait: bool, as_json: bool) -> None:
    """Start a calculation."""
    run(_act(target, "start", wait=wait, as_json=as_json))


@main.command()
@click.pass_obj
def cancel(target: Target) -> None:
    """Cancel the running calculation."""
    run(_act(target, "cancel", wait=False, as_json=False))


async def _act(
    target: Target, action: Literal["start", "cancel"], *, wait: bool, as_json: bool
) -> int:
    client = make_client(target, reconnect=wait)
    request_id: str | None = None
    calculation_id: str | None = None
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
                    raise Failure(f"the server refused to {action}: {error.message}", EXIT_REFUSED)
                case ActionAccepted(ack=ack) if ack.request_id == request_id:
                    calculation_id = ack.calculation_id
                    answer.reschedule(None)
                    if not wait:
                        past = "started" if action == "start" else "canceled"
                        click.echo(f"{past} calculation {printable(calculation_id)}")
                        await client.close()
                        return EXIT_OK
                case StateReceived(snapshot=snapshot) if calculation_id is not None:
                    if snapshot.calculation_id != calculation_id:
                        raise Failure(
                            f"calculation {calculation_id} is gone from the server "
                            f"(it restarted?); the state is now {snapshot.state.value}",
                            EXIT_REFUSED,
                        )
                    emit(snapshot, as_json)
                    if snapshot.state.is_final:
                        await client.close()
                        return EXIT_OK if snapshot.state is State.SUCCESS else EXIT_REFUSED
    raise Failure("the server closed the connection before answering", EXIT_UNREACHABLE)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one state message each.")
@click.option(
    "--until-done",
    is_flag=True,
    help="Exit at the next SUCCESS (status 0) or CANCELED (status 1).",
)
@click.pass_obj
def watch(target: Target, as_json: bool, until_done: bool) -> None:
    """Print the current state, then one line per change; reconnects by itself."""
    run(_watch(target, as_json, until_done))


async def _watch(target: Target, as_json: bool, until_done: bool) -> int:
    client = make_client(target, reconnect=True)
    last: StateSnapshot | None = None
    async with aclosing(follow(client)) as events:
        async for event in events:
            if not isinstance(event, StateReceived) or event.snapshot == last:
                continue  # a resync after a reconnect repeats the last state
            first = last is None
            last = event.snapshot
            emit(last, as_json)
            if until_done and not first and last.state.is_final:
                await client.close()
                return EXIT_OK if last.state is State.SUCCESS else EXIT_REFUSED
    return EXIT_OK
