"""Where notifications stand on screen: the one module that knows Textual's toast tree.

Textual's public API shows a notification (``App.notify``), clears them all
(``App.clear_notifications``) and times them (``App.NOTIFICATION_TIMEOUT``); it has no
say in where they stand: bottom right, over whatever is there. progress-tui keeps them
off the state's name, the progress and the connection status, so this module moves
them, through the widgets Textual builds for them (``textual/widgets/_toast.py``, not
exported). As of Textual 8, each screen holds:

    Screen
    └── ToastRack#textual-toastrack   docked at the bottom, on its own layer
        └── ToastHolder               one per notification, across the rack
            └── Toast                 the notification: its title, then its message

They are found by their types' names and styled by :data:`CSS`, which the app loads.
No other module of progress_tui names them: when Textual changes this tree,
tests/tui/test_toasts.py says so in a sentence, and this module is the one to mend.
"""

from __future__ import annotations

from typing import Any

from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget

__all__ = ["CSS", "FRAME", "RACK", "TOAST", "are_beside", "place", "set_beside", "shown"]

#: The type names of Textual's container of the toasts, and of one toast.
RACK = "ToastRack"
TOAST = "Toast"

#: The screen's class while notifications stand over the side panels, right of the
#: calculation, and while they stand below the progress, across the width.
BESIDE = "-toasts-beside"
BELOW = "-toasts-below"

#: The cells a toast's left border and padding take from its line, below the progress.
FRAME = 3

#: Loaded by the app beside app.tcss. A notification never covers the connection status
#: bar nor the keys, nor the state and the progress: :func:`place` sets the rack's place
#: as laid out (the margin here holds until then), and :func:`set_beside` one of the
#: screen's classes.
CSS = f"""
{RACK} {{
    margin-bottom: 2;
}}

/* Wide with a side panel: over the panel. */
Screen.{BESIDE} {TOAST} {{
    max-width: 100%;
}}

/* Otherwise, below the progress: across the width, its title above one line (the app
 * keeps the line short), no blank lines. */
Screen.{BELOW} {TOAST} {{
    width: 100%;
    max-width: 100%;
    padding: 0 1;
    margin-top: 0;
}}
"""


def set_beside(screen: Screen[Any], beside: bool) -> None:
    """Have the notifications of ``screen`` stand over the side panels (``beside``), or
    below the progress, across the width."""
    screen.set_class(beside, BESIDE)
    screen.set_class(not beside, BELOW)


def are_beside(screen: Screen[Any]) -> bool:
    """Whether the notifications of ``screen`` stand over the side panels."""
    return screen.has_class(BESIDE)


def shown(screen: Screen[Any]) -> list[Widget]:
    """The notifications on ``screen``, one widget each; one mounted a moment ago may
    not be laid out yet (its region is empty)."""
    return list(screen.query(TOAST))


def place(screen: Screen[Any], *, left: int, bottom: int) -> bool:
    """Stand the notifications of ``screen`` between ``left`` cells from its left edge
    and its right edge, the lowest one ``bottom`` rows above its bottom edge.

    Returns:
        False if ``screen`` holds no notifications' container (not composed yet, or
        shutting down): nothing was moved.
    """
    try:
        rack = screen.query_one(RACK)
    except NoMatches:
        return False
    rack.styles.margin = (0, 0, bottom, left)
    rack.styles.width = screen.size.width - left
    return True
