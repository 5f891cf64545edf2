"""Word when a calculation ends: the terminal's bell and desktop notification. Pure.

Both clients tell the terminal they run in, with escape sequences it understands:

- the bell, BEL: the terminal beeps, flashes, or marks the tab or window (tmux marks the
  window in its status line; its ``bell-action`` decides);
- a desktop notification, one of two sequences, picked from the environment
  (:func:`flavor`): OSC 9 (``ESC ] 9 ; body BEL``, iTerm2's, also kitty's and
  WezTerm's) where the terminal says it is one of those; OSC 777 (``ESC ] 777 ; notify
  ; title ; body BEL``, urxvt's, also foot's, Ghostty's, WezTerm's, kitty's, Windows
  Terminal's and VTE's where patched in, as Fedora and Ubuntu do) everywhere else; none
  on the Linux console or a dumb terminal, which would print it. A terminal that knows
  neither ignores it.
- Inside tmux (``$TMUX`` set) the notification is wrapped in tmux's passthrough (``ESC
  P tmux; ... ESC \\``, every ESC inside doubled), so that it reaches the outer terminal
  (tmux 3.3 and later pass it only with ``set -g allow-passthrough on``). The bell is
  not wrapped: tmux handles a bell itself, and rings the outer terminal's.

Title and body carry names the server sent: every control character (C0, C1, DEL, so
ESC and BEL too) and every ``;`` is taken out of them, and their lengths are bounded,
so that a peer's name can neither end the sequence early nor start one of its own, nor
move a field boundary. The environment is a parameter: the rule is tested without a
terminal.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from progress_protocol.states import State, StateSnapshot

from .wording import canceled, duration, printable

__all__ = [
    "BEL",
    "BODY_LIMIT",
    "TITLE",
    "TITLE_LIMIT",
    "EndWatch",
    "Flavor",
    "Notice",
    "alert",
    "clean",
    "desktop",
    "ended",
    "flavor",
    "in_tmux",
    "passthrough",
]

BEL = "\a"
ESC = "\x1b"
#: What ends tmux's passthrough (and any DCS): the string terminator.
ST = ESC + "\\"

#: The title of every notification.
TITLE = "progress"
#: The longest title and body, in characters (an ellipsis follows a longer one): a
#: notification is read at a glance, and terminals bound the length of a sequence.
TITLE_LIMIT = 64
BODY_LIMIT = 256

#: What the terminal's variables say it is: iTerm2 (also through ssh, which passes
#: LC_TERMINAL), kitty and WezTerm, each of which shows OSC 9 (iTerm2 knows no other).
OSC_9_PROGRAMS = frozenset({"iTerm.app", "WezTerm"})
OSC_9_VARIABLES = ("ITERM_SESSION_ID", "KITTY_WINDOW_ID", "WEZTERM_PANE")
OSC_9_TERMS = ("xterm-kitty", "wezterm")
#: Terminals that would print a sequence they do not know: the Linux console (its
#: OSC parser knows only its palette's) and a dumb terminal (Emacs' shell, a log).
SILENT_TERMS = frozenset({"linux", "dumb"})


class Flavor(enum.Enum):
    """Which desktop notification a terminal understands."""

    OSC_9 = "OSC 9"
    OSC_777 = "OSC 777"
    NONE = "none"


def flavor(environ: Mapping[str, str]) -> Flavor:
    """The desktop notification for the terminal that ``environ`` describes.

    OSC 9 where a variable names iTerm2, kitty or WezTerm (``TERM_PROGRAM``,
    ``LC_TERMINAL=iTerm2``, ``ITERM_SESSION_ID``, ``KITTY_WINDOW_ID``, ``WEZTERM_PANE``,
    a ``TERM`` of theirs); none on the Linux console or a dumb terminal; OSC 777
    otherwise. Inside tmux, ``TERM_PROGRAM`` is tmux's and ``TERM`` its own: the other
    variables, inherited from the terminal tmux was started in, still tell.
    """
    term = environ.get("TERM", "")
    if term in SILENT_TERMS:
        return Flavor.NONE
    if (
        environ.get("TERM_PROGRAM") in OSC_9_PROGRAMS
        or environ.get("LC_TERMINAL") == "iTerm2"
        or any(environ.get(name) for name in OSC_9_VARIABLES)
        or term.startswith(OSC_9_TERMS)
    ):
        return Flavor.OSC_9
    return Flavor.OSC_777


def in_tmux(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` is that of a program in a tmux pane."""
    return bool(environ.get("TMUX"))


def _is_control(char: str) -> bool:
    """C0 (BEL, ESC, CR, LF...), DEL and C1 (the 8-bit CSI, OSC and ST among them)."""
    return char < " " or "\x7f" <= char <= "\x9f"


def clean(text: str, limit: int) -> str:
    """``text`` safe inside a notification's sequence: no control character and no
    ``;`` (taken out, not replaced: a name reads on), any other unprintable character
    replaced (:func:`~progress_client.wording.printable`), and at most ``limit``
    characters and an ellipsis."""
    # Bounded first: a long string of characters to take out costs no more than that.
    kept = "".join(char for char in text[: 4 * limit] if not _is_control(char) and char != ";")
    return printable(kept.strip(), limit)


def passthrough(sequence: str) -> str:
    """``sequence`` wrapped for tmux to hand to the outer terminal as it is."""
    return f"{ESC}Ptmux;{sequence.replace(ESC, ESC + ESC)}{ST}"


@dataclass(frozen=True, slots=True)
class Notice:
    """What a notification says: a title, and one line."""

    title: str
    body: str


def desktop(notice: Notice, environ: Mapping[str, str]) -> str:
    """The desktop notification's sequence for the terminal of ``environ``, wrapped for
    tmux if need be; "" where there is none. OSC 9 has no title: the body says it all."""
    title = clean(notice.title, TITLE_LIMIT)
    body = clean(notice.body, BODY_LIMIT)
    match flavor(environ):
        case Flavor.OSC_9:
            sequence = f"{ESC}]9;{body}{BEL}"
        case Flavor.OSC_777:
            sequence = f"{ESC}]777;notify;{title};{body}{BEL}"
        case Flavor.NONE:
            return ""
    return passthrough(sequence) if in_tmux(environ) else sequence


def alert(notice: Notice, environ: Mapping[str, str]) -> str:
    """Everything to write to the terminal: the bell, then the desktop notification."""
    return BEL + desktop(notice, environ)


def ended(snapshot: StateSnapshot, mine: Collection[str] = ()) -> Notice:
    """The notice of a calculation's end, from its final state:
    "Calculation 3b6188a98e7a done (SUCCESS) after 6.0 s", "Calculation 3b6188a98e7a
    canceled by bob@desk during IN_PROGRESS, after 3.2 s"; a name is followed by "(you)"
    when its client id is one of ``mine``."""
    what = f"Calculation {printable(snapshot.calculation_id or '')}".rstrip()
    if snapshot.state is State.CANCELED:
        what += f" {canceled(snapshot.by, snapshot.canceled_during, mine)},"
    else:
        what += f" done ({snapshot.state.value})"
    if snapshot.started_at is not None:
        what += f" after {duration(snapshot.changed_at - snapshot.started_at)}"
    return Notice(TITLE, what.rstrip(","))


class EndWatch:
    """Which ends a client saw coming: a calculation it saw running (or was told of,
    :meth:`follow`), not a run already over when it connected. Each end counts once,
    however often its final state is sent again (a resync, a reconnect)."""

    def __init__(self) -> None:
        #: The calculation of the last running state seen.
        self._running: str | None = None
        #: Calculations followed without a running state seen (the TUI's own starts,
        #: whose states a busy screen may have folded). Bounded: the last few.
        self._followed: deque[str] = deque(maxlen=16)
        self._told: str | None = None

    def follow(self, calculation_id: str) -> None:
        """Count the end of ``calculation_id`` as seen coming, whatever was seen of it."""
        self._followed.append(calculation_id)

    def seen(self, snapshot: StateSnapshot) -> bool:
        """Take one state; True if it is the end of a calculation seen coming, the
        first time it is."""
        calculation = snapshot.calculation_id
        if calculation is None:
            return False
        if snapshot.state.is_running:
            self._running = calculation
            return False
        if not snapshot.state.is_final or calculation == self._told:
            return False
        if calculation != self._running and calculation not in self._followed:
            return False
        self._told = calculation
        return True
