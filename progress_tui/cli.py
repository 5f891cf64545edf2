"""``progress-tui``: the command line of the terminal client."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from progress_client.client import ProgressClient
from progress_client.options import check_connection_options, connection_options
from progress_client.reconnect import ReconnectPolicy
from progress_client.wording import printable
from progress_protocol import __version__
from progress_protocol.options import setting

from .ends import Notify
from .settings import SettingsFile

__all__ = ["check_theme", "default_log_path", "main"]

#: Several TUIs may share one log file: each line says whose (the name, the process).
LOG_FORMAT = "%(asctime)s %(levelname)-7s [{who} %(process)d] %(name)s: %(message)s"


def check_theme(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A usage error for a theme the app does not have, listing those it has."""
    if value is None:
        return None
    from .themes import names  # Textual loads only when it is needed.

    known = names()
    if value not in known:
        raise click.BadParameter(f"{value!r} is not a theme; the themes: {', '.join(known)}.")
    return value


def default_log_path() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state_home) / "progress" / "progress-tui.log"


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
    default=ReconnectPolicy.initial,
    help="Longest first wait before reconnecting, in seconds; it doubles after each failure.",
)
@setting(
    "--reconnect-cap",
    type=click.FloatRange(min=0.01, max=3600),
    default=ReconnectPolicy.cap,
    help="Longest wait before reconnecting, in seconds.",
)
@setting(
    "--notify",
    type=click.Choice([choice.value for choice in Notify]),
    default=Notify.MINE.value,
    help="When a run this TUI saw running ends, ring the terminal's bell, send a desktop "
    "notification (OSC 9 or OSC 777, by terminal; in tmux 3.3 and later: set -g "
    "allow-passthrough on) and show one here: for the runs started from this TUI "
    "(mine), for every run (all), or never (off). The n key changes it.",
)
@setting(
    "--theme",
    metavar="NAME",
    callback=check_theme,
    show_default="the palette's last choice, else progress-dark",
    help="The colours of this run: progress-dark, progress-ansi (the terminal's own) or one "
    "of Textual's themes. The palette (ctrl+p, 'theme') changes them and remembers the "
    "choice, in $XDG_CONFIG_HOME/progress/progress-tui.toml. In a terminal of 16 colours "
    "(or under NO_COLOR) the default is progress-ansi.",
)
@click.version_option(__version__, prog_name="progress-tui")
def main(
    urls: tuple[str, ...],
    token: str | None,
    cafile: str | None,
    name: str,
    log_file: Path,
    reconnect_initial: float,
    reconnect_cap: float,
    notify: str,
    theme: str | None,
) -> None:
    """Follow and drive the shared calculation of a progress-server.

    Keys: s start, c cancel, r resynchronise or reconnect now, l event log, h history,
    n which ends of a run to be told of (mine, all, off), ? help, q quit. Open as many
    terminals as you like, of any size: all of them show the same calculation, live.
    Given the URLs of several instances that share one calculation, it moves to the next
    one when its server goes away.
    """
    check_connection_options(urls, token, cafile)
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
    who = printable(name, limit=64).replace("%", "%%")  # the format is the log's, %-style
    handler.setFormatter(logging.Formatter(LOG_FORMAT.format(who=who)))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("websockets").setLevel(logging.WARNING)

    from .app import ProgressApp  # Textual loads only when the UI runs.

    # The backoff between attempts is progress_client/reconnect.py's ReconnectPolicy,
    # the same for every client: change it there; these two options set its numbers.
    # Which URL comes next is progress_client/failover.py's business.
    policy = ReconnectPolicy(initial=reconnect_initial, cap=reconnect_cap)
    # The client knows nothing of the screen: the app is handed it, and closes it.
    client = ProgressClient(
        urls, policy=policy, token=token, cafile=cafile, name=name, agent="progress-tui"
    )
    app = ProgressApp(
        client,
        log_path=str(log_file),
        notify=Notify(notify),
        theme=theme,
        settings=SettingsFile(),
    )
    app.run()
    sys.exit(app.return_code or 0)
