"""What progress-tui remembers between runs: a small TOML file in the XDG config dir.

``$XDG_CONFIG_HOME/progress/progress-tui.toml`` (by default
``~/.config/progress/progress-tui.toml``) holds the theme last chosen in the command
palette::

    theme = "nord"

The app writes it whole, atomically (a file beside it, renamed over it): a reader never
sees half of it. A file that cannot be read, is not TOML or holds a value of the wrong
type is left out with a log line, never a traceback: the app starts with its defaults.
Keys it does not know are left out too (and not written back).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "SettingsFile", "default_settings_path"]

logger = logging.getLogger(__name__)


def default_settings_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/progress/progress-tui.toml``, ``~/.config`` without it."""
    environ = os.environ if environ is None else environ
    config_home = environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(config_home) / "progress" / "progress-tui.toml"


@dataclass(frozen=True, slots=True)
class Settings:
    """The settings remembered; None: not chosen yet."""

    #: The theme last chosen in the command palette.
    theme: str | None = None


class SettingsFile:
    """The file the settings are remembered in.

    Args:
        path: Where it is; :func:`default_settings_path` by default.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = default_settings_path() if path is None else path

    def load(self) -> Settings:
        """The settings in the file; the defaults if there is none, or it cannot be used
        (said in the log)."""
        try:
            with self.path.open("rb") as file:
                data = tomllib.load(file)
        except FileNotFoundError:
            return Settings()
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            logger.warning("the settings in %s are left out: %s", self.path, exc)
            return Settings()
        theme = data.get("theme")
        if theme is not None and not isinstance(theme, str):
            logger.warning("the theme in %s is left out: not a string", self.path)
            theme = None
        return Settings(theme=theme)

    def save(self, settings: Settings) -> bool:
        """Write ``settings`` to the file, atomically; False (said in the log) if it
        cannot be written."""
        lines = ["# progress-tui's settings, written by it: see docs/clients.md.\n"]
        if settings.theme is not None:
            # A JSON string is a TOML basic string (the same escapes).
            lines.append(f"theme = {json.dumps(settings.theme)}\n")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                    file.writelines(lines)
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            logger.warning("cannot remember the settings in %s: %s", self.path, exc)
            return False
        return True
