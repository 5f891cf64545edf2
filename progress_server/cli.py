"""``progress-server``: the command line of the server."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import math
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import click

from progress_protocol import __version__
from progress_protocol.messages import MAX_STEP_SECONDS, ROLES
from progress_protocol.options import check_token, setting
from progress_protocol.states import DEFAULT_STEP_SECONDS
from progress_protocol.urls import safe_url

from .backends.base import Backend, BackendUnavailable
from .backends.redis import DEFAULT_PREFIX, RedisBackend
from .backends.redis import DEFAULT_TIMEOUT as DEFAULT_REDIS_TIMEOUT
from .backends.redis import check_url as check_redis_url
from .config import DEFAULT_HOST, DEFAULT_PATH, DEFAULT_PORT, ServerConfig
from .endpoints.http_api import HttpApi
from .logs import LOG_FORMAT, JsonFormatter, SafeFormatter
from .server import ProgressServer, SetupError
from .tokens import (
    TokensFileError,
    check_name,
    editing,
    new_token,
    read_tokens,
    write_tokens,
)
from .transport.descriptors import raise_open_files_limit
from .workers import WORKER_TIMEOUT, WORKER_VARIABLE, Supervisor, join_supervisor, reserve_port

__all__ = ["main"]

logger = logging.getLogger("progress_server")

LOG_LEVELS = ("debug", "info", "warning", "error")
#: Shorter steps than this are not a calculation anyone can follow; the longest is
#: what every client accepts (the protocol's bound).
MIN_STEP_SECONDS = 0.001
#: An action gets twice the Redis timeout: it must be answered before the 5 s a
#: request (or a handshake) may take.
MAX_REDIS_TIMEOUT = 2.0


def _step(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not (math.isfinite(value) and MIN_STEP_SECONDS <= value <= MAX_STEP_SECONDS):
        raise click.BadParameter(
            f"must be a number from {MIN_STEP_SECONDS:g} to {MAX_STEP_SECONDS:g}, not {value}."
        )
    return value


def _websocket_path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.startswith("/") or any(c in value for c in "?# "):
        raise click.BadParameter(f"must start with '/' and hold no '?', '#' or space: {value!r}.")
    if value in HttpApi.PATHS:
        raise click.BadParameter(f"{value} is taken by the HTTP API.")
    return value


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    subcommand_metavar="[token add|list|revoke ...]",
)
@setting(
    "--host",
    default=DEFAULT_HOST,
    help="Interface to listen on.",
)
@setting(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    help="TCP port; 0 picks a free port, named in the log.",
)
@setting(
    "--path",
    default=DEFAULT_PATH,
    callback=_websocket_path,
    help="Path of the WebSocket endpoint.",
)
@setting(
    "--step-seconds",
    type=float,
    default=DEFAULT_STEP_SECONDS,
    callback=_step,
    help=f"Length of each of the three steps of a calculation, in seconds "
    f"({MIN_STEP_SECONDS:g} to {MAX_STEP_SECONDS:g}).",
)
@setting(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    help="Least important log messages shown.",
)
@setting(
    "--log-format",
    type=click.Choice(("text", "json"), case_sensitive=False),
    default="text",
    help="text for a terminal; json for one object a line with the event's fields "
    "(client_id, peer, state, seq, code, reason), for jq and log shippers.",
)
@setting(
    "--metrics/--no-metrics",
    envvar="PROGRESS_METRICS",
    default=True,
    help="Serve GET /metrics (Prometheus) and count for it.",
)
@setting(
    "--max-message-bytes",
    type=click.IntRange(64, 1024 * 1024),
    default=ServerConfig.max_message_bytes,
    help="Largest message a client may send; a larger one closes it with 1009.",
)
@setting(
    "--max-clients",
    type=click.IntRange(1, 1_000_000),
    default=ServerConfig.max_clients,
    help="Clients connected at most; the next handshake gets HTTP 503.",
)
@setting(
    "--rate-limit",
    type=click.FloatRange(0.1, 100_000),
    default=ServerConfig.rate_limit,
    help="Messages per second a client may send on average; excess ones are dropped.",
)
@setting(
    "--rate-burst",
    type=click.IntRange(1, 100_000),
    default=ServerConfig.rate_burst,
    help="Messages a client may send at once.",
)
@setting(
    "--ping-interval",
    type=click.FloatRange(0.1, 3600),
    default=ServerConfig.ping_interval,
    help="Seconds between keepalive pings to each client.",
)
@setting(
    "--ping-timeout",
    type=click.FloatRange(0.1, 3600),
    default=ServerConfig.ping_timeout,
    help="Seconds a pong may take before a client counts as dead and is dropped.",
)
@setting(
    "--token",
    help="Shared secret every client (and every HTTP request but /healthz) must present. "
    "Prefer the environment variable: command lines are visible to other users.",
)
@setting(
    "--tokens-file",
    type=click.Path(dir_okay=False),
    help="Per-user tokens: a name, a role (viewer or operator) and a token's hash a line, "
    "made with 'progress-server token add'. Re-read within a second when it changes; a "
    "revoked token's clients are closed. Not with --token.",
)
@setting(
    "--allow-origin",
    "allowed_origins",
    envvar="PROGRESS_ALLOW_ORIGINS",
    multiple=True,
    help="A web page origin allowed besides the server's own, e.g. "
    "https://dash.example.com, or '*' for any; repeat for more (space-separated in the "
    "variable). Requests from pages of any other origin get 403.",
)
@setting(
    "--allow-host",
    "allowed_hosts",
    envvar="PROGRESS_ALLOW_HOSTS",
    multiple=True,
    help="A Host name to answer to besides localhost, 127.0.0.1 and [::1] when listening "
    "on loopback (e.g. behind a proxy), or '*' for any; repeat for more (space-separated "
    "in the variable). Requests for other names get 403 (DNS rebinding).",
)
@setting(
    "--redis-url",
    help="Share the calculation with every server instance using this Redis "
    "(redis:// or rediss://, the password in the URL; prefer the environment variable). "
    "By default the calculation lives in this process. Needs the redis extra: "
    "pip install 'progress[redis]'.",
)
@setting(
    "--redis-prefix",
    default=DEFAULT_PREFIX,
    help="Put before every Redis key and channel, so that deployments can share a Redis.",
)
@setting(
    "--redis-timeout",
    type=click.FloatRange(0.05, MAX_REDIS_TIMEOUT),
    default=DEFAULT_REDIS_TIMEOUT,
    help="Seconds one round trip to Redis may take before it counts as failed; an action "
    "gets twice this, and is answered 'unavailable' past it (so within the 5 s a request "
    f"may take, hence at most {MAX_REDIS_TIMEOUT:g}).",
)
@setting(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    help="Server processes sharing the port (SO_REUSEPORT), to use more than one core; "
    "above 1 needs --redis-url, through which they share the calculation. A worker that "
    "dies is restarted.",
)
@click.option("--reuse-port", is_flag=True, hidden=True)  # set by --workers for each worker
# Seconds a worker may go without a heartbeat before it is replaced (shorter in tests).
@click.option(
    "--worker-timeout", type=click.FloatRange(0.1, 3600), default=WORKER_TIMEOUT, hidden=True
)
@setting(
    "--certfile",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM certificate chain: serve wss:// and https://.",
)
@setting(
    "--keyfile",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM private key of --certfile, when it is not in the same file.",
)
@click.version_option(__version__, prog_name="progress-server")
@click.pass_context
def main(ctx: click.Context, /, **options: Any) -> None:
    """Run one shared calculation and broadcast its every change to every client.

    WebSocket clients connect to ws://HOST:PORT/PATH; the same port answers
    GET /healthz, GET /readyz, GET /metrics, GET /state, GET /history,
    GET /presence, POST /start and POST /cancel. Stop with Ctrl-C or SIGTERM:
    clients are closed with code 1001 (going away).

    Extras: pip install 'progress[redis]' for --redis-url and --workers (several
    instances sharing one calculation); pip install 'progress[fast]' for uvloop, a
    faster event loop, used when installed (the log says which loop runs).

    Who may do what: no token lets anyone who reaches the port start and cancel;
    --token is one shared operator's token; --tokens-file gives each person or robot
    a token of their own and a role (progress-server token add NAME --role viewer).
    """
    if ctx.invoked_subcommand is not None:
        return
    log_level = options.pop("log_level")
    log_format = options.pop("log_format").lower()
    options["allowed_origins"] = tuple(options["allowed_origins"])
    options["allowed_hosts"] = tuple(options["allowed_hosts"])
    if options["keyfile"] and not options["certfile"]:
        raise click.UsageError("--keyfile needs --certfile.")
    check_token(options["token"])
    if options["token"] is not None and options["tokens_file"] is not None:
        raise click.UsageError(
            "--token and --tokens-file do not go together: give the shared token's holders "
            "tokens of their own (progress-server token add NAME --role operator)."
        )
    redis_url, redis_prefix = options.pop("redis_url"), options.pop("redis_prefix")
    redis_timeout = options.pop("redis_timeout")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://")):
        raise click.BadParameter(
            f"must be a redis:// or rediss:// URL, not {safe_url(redis_url)!r}.",
            param_hint="--redis-url",
        )
    workers, worker_timeout = options.pop("workers"), options.pop("worker_timeout")
    if workers > 1 and redis_url is None:
        raise click.UsageError(
            "--workers above 1 needs --redis-url: each worker is a process of its own, "
            "and they can share one calculation only through Redis."
        )
    config = ServerConfig(**options)
    worker = os.environ.get(WORKER_VARIABLE)
    configure_logging(
        log_level,
        secrets=(config.token,) if config.token else (),
        worker=worker,
        json_lines=log_format == "json",
    )
    if redis_url is not None:
        try:
            check_redis_url(redis_url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--redis-url") from None
        except BackendUnavailable as exc:  # the extra is not installed
            _fatal(str(exc), json_lines=log_format == "json")
    if config.tokens_file is not None:
        try:  # said before anything starts: the server reads it again as it does
            read_tokens(config.tokens_file)
        except TokensFileError as exc:
            _fatal(f"cannot use the tokens file: {exc}", json_lines=log_format == "json")
    if workers > 1:
        sys.exit(
            _supervise(workers, config, json_lines=log_format == "json", timeout=worker_timeout)
        )
    heartbeat = join_supervisor()  # a worker of --workers: it dies with its supervisor
    raise_open_files_limit()
    tune_garbage_collector()
    backend: Backend | None = None
    if redis_url is not None:
        backend = RedisBackend(
            redis_url,
            prefix=redis_prefix,
            step_seconds=config.step_seconds,
            timeout=redis_timeout,
        )
    server = ProgressServer(config, backend=backend)
    serving = _serve_until_signal(server)
    try:
        run(serving if heartbeat is None else heartbeat.beside(serving))
    except (SetupError, BackendUnavailable) as exc:
        _fatal(str(exc), json_lines=log_format == "json")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = "the address is already in use (is another server running?)"
        else:
            reason = exc.strerror or str(exc)
        _fatal(
            f"cannot listen on {config.host}:{config.port}: {reason}",
            json_lines=log_format == "json",
        )


@main.group(short_help="Add, list and revoke the tokens of a --tokens-file.")
def token() -> None:
    """Manage a tokens file: one token per person or robot, each with a role.

    A viewer watches (the state, the history, who is here); an operator also starts
    and cancels. The file holds each token's SHA-256, never the token: a new token is
    printed once, by 'add'. A running server re-reads the file within a second.
    """


def _tokens_file_option(function: Any) -> Any:
    return setting(
        "--tokens-file",
        type=click.Path(dir_okay=False),
        callback=_tokens_file,
        show_default=False,
        help="The tokens file the server reads (--tokens-file of progress-server).",
    )(function)


def _tokens_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """The file named here, else before 'token' (progress-server --tokens-file F token
    list), else a usage error that says how to name it."""
    if value is None:
        value = ctx.find_root().params.get("tokens_file")
    if value is None:
        raise click.UsageError(
            "say which tokens file: --tokens-file PATH, or PROGRESS_TOKENS_FILE.", ctx=ctx
        )
    return str(value)


@token.command(short_help="Give NAME a new token, printed once.")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="viewer",
    show_default=True,
    help="viewer: watch only; operator: also start and cancel.",
)
@_tokens_file_option
def add(name: str, role: str, tokens_file: str) -> None:
    """Add NAME with a new random token, and print the token once on standard output
    (give it to them: it cannot be shown again). The file is created if need be."""
    try:
        check_name(name)
    except TokensFileError as exc:  # a usage error, like a bad --role
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    new = new_token()
    try:
        with editing(tokens_file) as tokens:
            changed = tokens.added(name, role, new)
            write_tokens(tokens_file, changed)
    except TokensFileError as exc:
        _fail(str(exc))
    click.echo(
        f"progress-server: added {name} ({role}) to {tokens_file}; their token, shown "
        "only this once:",
        err=True,
    )
    click.echo(new)


@token.command(name="list", short_help="Print the names and roles, never tokens.")
@_tokens_file_option
def list_tokens(tokens_file: str) -> None:
    """Print each name and role in the tokens file; the tokens are not in it."""
    try:
        tokens = read_tokens(tokens_file)
    except TokensFileError as exc:
        _fail(str(exc))
    if not tokens.entries:
        click.echo(f"progress-server: {tokens_file} has no entries", err=True)
    width = max((len(entry.name) for entry in tokens.entries), default=0)
    for entry in tokens.entries:
        click.echo(f"{entry.name:<{width}}  {entry.role}")


@token.command(short_help="Take NAME's token away.")
@click.argument("name")
@_tokens_file_option
def revoke(name: str, tokens_file: str) -> None:
    """Remove NAME's token: every server reading the file closes their connections
    within a second (code 4401) and refuses the token from then on."""
    try:
        with editing(tokens_file) as tokens:
            write_tokens(tokens_file, tokens.revoked(name))
    except TokensFileError as exc:
        _fail(str(exc))
    click.echo(f"progress-server: revoked {name}'s token in {tokens_file}", err=True)


def _fail(sentence: str) -> NoReturn:
    click.echo(f"progress-server: {sentence}", err=True)
    sys.exit(1)


def _fatal(sentence: str, *, json_lines: bool) -> NoReturn:
    """Why the server cannot run, in one line, then exit 1: a log record when the log
    is JSON (a log shipper needs this line most), else the command's own sentence."""
    if json_lines:
        logger.error(sentence)
    else:
        click.echo(f"progress-server: {sentence}", err=True)
    sys.exit(1)


def tune_garbage_collector() -> None:
    """Collect the youngest objects every 10,000 allocations, not 700.

    Each client is a few hundred objects, and connecting 10,000 of them made CPython's
    collector walk the growing heap again and again: a quarter of the CPU of a
    reconnect storm went there (measured: 2,200 connections a second with the defaults,
    3,000 with this; docs/performance.md). Memory stays as it was: what the collector
    frees is cycles, and there are few.
    """
    gc.freeze()  # what was imported to get here lives as long as the process
    gc.set_threshold(10_000, 10, 10)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (the `fast` extra), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def configure_logging(
    level: str,
    *,
    secrets: tuple[str, ...] = (),
    worker: str | None = None,
    json_lines: bool = False,
) -> None:
    """Log to stderr, every record redacted and escaped (see :mod:`.logs`), as text or
    JSON lines; a worker's lines say which worker wrote them."""
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if json_lines:
        formatter = JsonFormatter(secrets=secrets, worker=worker)
    else:
        fmt = (
            LOG_FORMAT if worker is None else LOG_FORMAT.replace("%(name)s", f"w{worker} %(name)s")
        )
        formatter = SafeFormatter(fmt, secrets=secrets)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # websockets logs every connection and rejected handshake at INFO; ours say it better.
    if level.lower() != "debug":
        logging.getLogger("websockets").setLevel(logging.WARNING)


async def _serve_until_signal(server: ProgressServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    logger.info("event loop: %s", "uvloop" if "uvloop" in type(loop).__module__ else "asyncio")
    received: list[str] = []

    def on_signal(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    # SIGHUP too: closing the terminal that runs the server must not kill it mid-word.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.set_exception_handler(server.descriptors.handle_loop_exception)
    async with server:
        await stop.wait()
        log_stopping(received[0], server)


def log_stopping(signal_name: str, server: ProgressServer) -> None:
    """Say why the server stops and, when a calculation is running, what becomes of it:
    in Redis it goes on (an instance sharing it, or this one restarted, drives it to
    its end); in memory it is lost, and the line is a WARNING."""
    closing = "closing every client with 1001 (going away)"
    snapshot = server.service.snapshot
    if not snapshot.state.is_running:
        logger.info("%s: stopping, %s", signal_name, closing)
        return
    shared = isinstance(server.backend, RedisBackend)
    logger.log(
        logging.INFO if shared else logging.WARNING,
        "%s: stopping with calculation %s %s (%s); %s",
        signal_name,
        snapshot.calculation_id,
        snapshot.state,
        "it goes on in Redis: another instance, or this one restarted, drives it on"
        if shared
        else "it is lost: this server kept it in memory",
        closing,
        extra={
            "state": snapshot.state.value,
            "seq": snapshot.seq,
            "calculation_id": snapshot.calculation_id,
        },
    )


def _supervise(workers: int, config: ServerConfig, *, json_lines: bool, timeout: float) -> int:
    """Reserve the port, run the workers on it until a signal; the exit status."""
    try:
        holder = reserve_port(config.host, config.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _fatal(f"cannot listen on {config.host}:{config.port}: {reason}", json_lines=json_lines)
    port = holder.getsockname()[1]
    logger.info("starting %d workers on %s port %d (SO_REUSEPORT)", workers, config.host, port)
    # The workers take the same options; the last ones given win.
    arguments = [*sys.argv[1:], "--workers", "1", "--port", str(port), "--reuse-port"]
    try:
        return asyncio.run(Supervisor(workers, arguments, timeout=timeout).run())
    finally:
        holder.close()
