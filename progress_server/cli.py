"""``progress-server``: the command line of the server."""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import signal
import sys

import click

from . import __version__
from .calculation import DEFAULT_STEP_SECONDS
from .routes import HttpRoutes
from .server import DEFAULT_HOST, DEFAULT_PATH, DEFAULT_PORT, ProgressServer

__all__ = ["main"]

logger = logging.getLogger("progress_server")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error")


def _positive_finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a number greater than 0, not {value}.")
    return value


def _websocket_path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.startswith("/") or any(c in value for c in "?# "):
        raise click.BadParameter(f"must start with '/' and hold no '?', '#' or space: {value!r}.")
    if value in HttpRoutes.PATHS:
        raise click.BadParameter(f"{value} is taken by the HTTP API.")
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    envvar="PROGRESS_HOST",
    show_envvar=True,
    help="Interface to listen on.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    envvar="PROGRESS_PORT",
    show_envvar=True,
    help="TCP port; 0 picks a free port, named in the log.",
)
@click.option(
    "--path",
    default=DEFAULT_PATH,
    show_default=True,
    envvar="PROGRESS_PATH",
    show_envvar=True,
    callback=_websocket_path,
    help="Path of the WebSocket endpoint.",
)
@click.option(
    "--step-seconds",
    type=float,
    default=DEFAULT_STEP_SECONDS,
    show_default=True,
    envvar="PROGRESS_STEP_SECONDS",
    show_envvar=True,
    callback=_positive_finite,
    help="Length of each of the three steps of a calculation, in seconds (> 0).",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    envvar="PROGRESS_LOG_LEVEL",
    show_envvar=True,
    help="Least important log messages shown.",
)
@click.version_option(__version__, prog_name="progress-server")
def main(host: str, port: int, path: str, step_seconds: float, log_level: str) -> None:
    """Run one shared calculation and broadcast its every change to every client.

    WebSocket clients connect to ws://HOST:PORT/PATH; the same port answers
    GET /healthz, GET /state, POST /start and POST /cancel. Stop with Ctrl-C or
    SIGTERM: clients are closed with code 1001 (going away).
    """
    configure_logging(log_level)
    server = ProgressServer(host=host, port=port, path=path, step_seconds=step_seconds)
    try:
        asyncio.run(_serve_until_signal(server))
    except OSError as exc:
        reason = (
            "the address is already in use (is another server running?)"
            if exc.errno == errno.EADDRINUSE
            else (exc.strerror or str(exc))
        )
        click.echo(f"progress-server: cannot listen on {host}:{port}: {reason}", err=True)
        sys.exit(1)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    # websockets logs every connection and rejected handshake at INFO; ours say it better.
    if level.lower() != "debug":
        logging.getLogger("websockets").setLevel(logging.WARNING)


async def _serve_until_signal(server: ProgressServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
        logger.info("stopping: closing every client with 1001 (going away)")
