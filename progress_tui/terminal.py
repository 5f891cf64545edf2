"""Raw sequences to the terminal Textual owns: the one module that knows how Textual
writes to it.

Textual draws the screen by writing frames through the app's driver, and its public
``App.bell()`` writes BEL the same way: ``self._driver.write("\\a")``, unless headless.
The driver queues what it is given, in order, for a thread that writes to the
terminal, and a frame is written in one go from the app's own loop: a sequence
written through it from a handler lands between two frames, never inside one. Textual
has no public call for any other sequence (a desktop notification's OSC), so
:func:`write` uses that private attribute, as ``App.bell()`` does. No other module
names it: when Textual changes, tests/tui/test_terminal.py says so in a sentence, and
this module is the one to mend.
"""

from __future__ import annotations

import logging
from typing import Any

from textual.app import App

__all__ = ["DRIVER", "write"]

logger = logging.getLogger(__name__)

#: The attribute of Textual's App that holds its driver (``App.bell()`` writes there).
DRIVER = "_driver"


def write(app: App[Any], data: str) -> bool:
    """Write ``data`` to the terminal of ``app`` between two frames, as ``App.bell()``
    does. Headless (the tests' ``run_test``), or with no driver (not running yet, or
    gone), nothing is written.

    Returns:
        Whether ``data`` was handed to the driver.
    """
    if app.is_headless:
        return False
    driver = getattr(app, DRIVER, None)
    if driver is None:
        return False
    try:
        driver.write(data)
    except Exception:
        # Shutting down (the driver's writer gone), or a Textual that changed: a
        # notification missed is not worth stopping the app, nor the connection.
        logger.exception("could not write to the terminal")
        return False
    return True
