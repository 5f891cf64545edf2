"""The connection options both clients take: --url, --token, --cafile and --name."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import click

from progress_protocol.messages import clean_name
from progress_protocol.options import check_token, setting

from .client import DEFAULT_URL, check_url, tls_context

__all__ = ["check_connection_options", "connection_options", "default_name"]

F = TypeVar("F", bound=Callable[..., Any])


def _urls(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(check_url(url) for url in value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}.") from None


def default_name() -> str:
    """``user@host``: who this is, for the others to read in "started by"."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        user = "someone"
    return clean_name(f"{user}@{socket.gethostname()}") or "someone"


def _name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    name = clean_name(value)
    if not name:
        raise click.BadParameter("must hold at least one printable character.")
    return name


def connection_options(function: F) -> F:
    """--url, --token, --cafile and --name, shared by progress-tui and progress-ctl."""
    options = [
        setting(
            "--url",
            "urls",
            multiple=True,
            default=(DEFAULT_URL,),
            callback=_urls,
            help="WebSocket URL of the server (wss:// for TLS). Repeat it for instances that "
            "share one calculation (in the variable, separate them with spaces): they are "
            "tried in turn, and a lost connection moves on to the next at once.",
        ),
        setting(
            "--token",
            help="The server's token, when it has one. Prefer the environment variable: "
            "command lines are visible to other users.",
        ),
        setting(
            "--cafile",
            type=click.Path(exists=True, dir_okay=False),
            help="PEM certificates to trust for a wss:// server (e.g. a self-signed one); "
            "by default the system's.",
        ),
        setting(
            "--name",
            default=default_name,
            show_default="user@host",
            callback=_name,
            help="Who you are, as the others see it in 'started by' and in the history "
            "(at most 64 characters).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def check_connection_options(urls: tuple[str, ...], token: str | None, cafile: str | None) -> None:
    """Raise a usage error for options that do not go together."""
    if cafile and not any(url.startswith("wss:") for url in urls):
        raise click.BadParameter("needs a wss:// URL.", param_hint="--cafile")
    if cafile:
        try:
            tls_context(cafile)  # read now: a wrong file is a usage error, not a traceback
        except ValueError as exc:
            raise click.BadParameter(f"{exc}.", param_hint="--cafile") from None
    check_token(token)
