"""Who a client is: its name, its role, the kind of client it runs; and what a role may do.

Pure. With a tokens file the name and the role are its token's; with the shared token,
or none, everyone is an operator and goes by the name they give.
"""

from __future__ import annotations

from dataclasses import dataclass

from progress_protocol.messages import ROLE_COMMANDS, Command

__all__ = ["CLIENT_KINDS", "OPERATOR", "User", "client_kind", "forbidden_sentence", "may"]

OPERATOR = "operator"
#: The kinds of client presence tells apart, read from the User-Agent.
CLIENT_KINDS = ("tui", "ctl", "browser", "other")


def client_kind(user_agent: str | None) -> str:
    """``tui`` for progress-tui, ``ctl`` for progress-ctl, ``browser`` for a web page,
    ``other`` for anything else: told by the first word of the User-Agent."""
    if not user_agent:
        return "other"
    product = user_agent[:64].lstrip().partition("/")[0].lower()
    if product == "progress-tui":
        return "tui"
    if product == "progress-ctl":
        return "ctl"
    if product == "mozilla":
        return "browser"
    return "other"


def may(role: str, command: Command) -> bool:
    """Whether a role may send a command."""
    return command in ROLE_COMMANDS.get(role, ())


def forbidden_sentence(user: User, command: Command) -> str:
    """Why ``user`` may not ``command``, for them to read."""
    who = f"{user.name} is a {user.role}" if user.name else f"This token is a {user.role}'s"
    return (
        f"{who}: a {user.role} may watch but not {command} the calculation; "
        "ask an operator, or for an operator's token."
    )


@dataclass(frozen=True, slots=True)
class User:
    """Who a connection (or an HTTP request) is, as the server takes it.

    Attributes:
        name: Who its actions are attributed to: the token's name with a tokens file,
            else the name the client gave (None: it gave none).
        role: ``viewer`` or ``operator``.
        client: The kind of client (:data:`CLIENT_KINDS`).
        credential: The SHA-256 of its token, with a tokens file: a change of the file
            that drops it closes the connection.
        claimed: The name the client gave, when the token's name overrides it.
    """

    name: str | None
    role: str = OPERATOR
    client: str = "other"
    credential: bytes | None = None
    claimed: str | None = None

    @property
    def commands(self) -> tuple[Command, ...]:
        return ROLE_COMMANDS.get(self.role, ())
