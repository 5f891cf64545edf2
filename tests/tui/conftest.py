"""Fixtures shared by the TUI tests."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.tui.looks import TERMINALS, terminal


@pytest.fixture
def utc() -> Iterator[None]:
    """Times on screen are local time: make it the same everywhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "UTC")
        time.tzset()
        yield
    time.tzset()


@pytest.fixture(autouse=True)
def truecolor() -> Iterator[None]:
    """Every app under test is made in a terminal of every colour, whatever the one the
    tests run in (the app picks its theme by the terminal's colours, and NO_COLOR);
    :func:`tests.tui.looks.terminal` makes another kind, for the tests of colours."""
    with terminal(TERMINALS["truecolor"]):
        yield
