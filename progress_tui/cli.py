"""``progress-tui``: the command line of the terminal client."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from progress_server.options import setting

from . import __version__
from .client import DEFAULT_URL, check_url, tls_context
from .reconnect import ReconnectPolicy

__all__ = ["check_connection_options", "connection_options", "default_log_path", "main"]

F = TypeVar("F", bound=Callable[..., Any])

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def default_log_path() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state_home) / "progress" / "progress-tui.log"


def _url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_url(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}.") from None


def connection_options(function: F) -> F:
    """--url, --token and --cafile, shared by progress-tui and progress-ctl."""
    options = [
        setting(
            "--url",
            default=DEFAULT_URL,
            callback=_url,
            help="WebSocket URL of the server (wss:// for TLS).",
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
    ]
    for option in reversed(options):
        function = option(function)
    return function


def check_connection_options(url: str, token: str | None, cafile: str | None) -> None:
    """Raise a usage error for options that do not go together."""
    if cafile and not url.startswith("wss:"):
        raise click.BadParameter("needs a wss:// URL.", param_hint="--cafile")
    if cafile:
        try:
            tls_context(cafile)  # read now: a wrong file is a usage error, not a traceback
        except ValueError as exc:
            raise click.BadParameter(f"{exc}.", param_hint="--cafile") from None
    if token == "":
        raise click.BadParameter("must not be empty.", param_hint="--token")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options
@setting(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=default_log_path,
    show_default="$XDG_STATE_HOME/progress/progress-tui.log",
    help="Where connection events and unexpected errors are logged.",
)
@setting(
    "--reconnect-initial",
    type=click.FloatRange(min=0.01, max=3600),
    default=0.5,
    help="Longest first wait before reconnecting, in seconds; it doubles after each failure.",
)
@setting(
    "--reconnect-cap",
    type=click.FloatRange(min=0.01, max=3600),
    default=10.0,
    help="Longest wait before reconnecting, in seconds.",
)
@click.version_option(__version__, prog_name="progress-tui")
def main(
    url: str,
    token: str | None,
    cafile: str | None,
    log_file: Path,
    reconnect_initial: float,
    reconnect_cap: float,
) -> None:
    """Follow and drive the shared calculation of a progress-server.

    Keys: s start, c cancel, r reconnect now, q quit. Open as many terminals as you
    like: all of them show the same calculation, live.
    """
    check_connection_options(url, token, cafile)
    if reconnect_cap < reconnect_initial:
        raise click.BadParameter(
            f"must be at least --reconnect-initial ({reconnect_initial:g}).",
            param_hint="--reconnect-cap",
        )
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
    except OSError as exc:
        click.echo(f"progress-tui: cannot write the log file {log_file}: {exc.strerror}", err=True)
        sys.exit(2)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("websockets").setLevel(logging.WARNING)

    from .app import ProgressApp  # Textual loads only when the UI runs.

    policy = ReconnectPolicy(initial=reconnect_initial, cap=reconnect_cap)
    app = ProgressApp(url, policy=policy, token=token, cafile=cafile, log_path=str(log_file))
    app.run()
    sys.exit(app.return_code or 0)
