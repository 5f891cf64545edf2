"""The command lines' shared convention: every option also reads PROGRESS_<NAME>."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["setting"]

F = TypeVar("F", bound=Callable[..., Any])


def setting(name: str, *declarations: str, **options: Any) -> Callable[[F], F]:
    """A click option that also reads PROGRESS_<NAME> and shows its default and variable."""
    options.setdefault("envvar", "PROGRESS_" + name.removeprefix("--").upper().replace("-", "_"))
    options.setdefault("show_default", True)
    return click.option(name, *declarations, show_envvar=True, **options)
