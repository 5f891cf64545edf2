"""The command lines' shared convention: every option also reads PROGRESS_<NAME>."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

__all__ = ["Setting", "check_token", "setting"]

F = TypeVar("F", bound=Callable[..., Any])


class Setting(click.Option):
    """An option that also reads an environment variable, and names the variable in an
    error only when the bad value came from it: a typo on the command line should not
    send the user looking through their environment."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        if ctx is not None and ctx.get_parameter_source(self.name or "") is (
            ParameterSource.ENVIRONMENT
        ):
            return super().get_error_hint(ctx)
        return click.Parameter.get_error_hint(self, ctx)


def setting(name: str, *declarations: str, **options: Any) -> Callable[[F], F]:
    """A click option that also reads PROGRESS_<NAME> and shows its default and variable."""
    options.setdefault("envvar", "PROGRESS_" + name.removeprefix("--").upper().replace("-", "_"))
    options.setdefault("show_default", True)
    return click.option(name, *declarations, cls=Setting, show_envvar=True, **options)


def check_token(token: str | None) -> None:
    """A usage error for a token that no client could ever present.

    The token travels in an ``Authorization`` header, which carries visible ASCII only;
    the server and both clients refuse any other at startup, with the same sentence.

    Raises:
        click.BadParameter: If ``token`` is empty or holds another character.
    """
    if token is None:
        return
    if token == "":
        raise click.BadParameter("must not be empty.", param_hint="--token")
    if not all("!" <= char <= "~" for char in token):
        raise click.BadParameter(
            "must be made of visible ASCII characters (letters, digits, punctuation; no spaces).",
            param_hint="--token",
        )
