"""progress_tui/terminal.py, the seam through Textual's driver: it writes where
``App.bell()`` writes, nothing headless, and a sentence says so if Textual moves it."""

from __future__ import annotations

import logging
from importlib.metadata import version

import pytest
from textual.app import App
from textual.driver import Driver

from progress_tui import terminal

#: What to mend when Textual changes.
MEND = (
    "progress_tui/terminal.py writes the desktop notification's sequence there, as "
    "App.bell() does; mend it there (and docs/architecture.md, the seams)"
)


class Pretending(App[None]):
    """An app under ``run_test`` that says it is not headless while :attr:`pretend`."""

    pretend = False

    @property
    def is_headless(self) -> bool:
        return not self.pretend and super().is_headless


async def test_textual_keeps_its_driver_where_terminal_writes() -> None:
    """The app's driver is still ``App._driver``, a Driver that can write."""
    app = App[None]()
    async with app.run_test():
        driver = getattr(app, terminal.DRIVER, None)
        assert isinstance(driver, Driver), (
            f"Textual {version('textual')} keeps no Driver in App.{terminal.DRIVER} any "
            f"more: {MEND}."
        )
        assert callable(getattr(driver, "write", None)), (
            f"Textual {version('textual')}'s Driver has no write() any more: {MEND}."
        )


async def test_it_writes_where_textuals_bell_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a terminal, the sequence goes to the driver, and so does Textual's own bell:
    both, in order, between two frames."""
    app = Pretending()
    async with app.run_test():
        written: list[str] = []
        monkeypatch.setattr(getattr(app, terminal.DRIVER), "write", written.append)
        app.pretend = True
        try:  # nothing awaited: no frame comes in between
            assert terminal.write(app, "\x1b]9;done\x07")
            app.bell()
        finally:
            app.pretend = False
        seen = list(written)
    assert seen[:1] == ["\x1b]9;done\x07"]
    assert seen[1:] == ["\x07"], (
        f"Textual {version('textual')}'s App.bell() no longer writes through "
        f"App.{terminal.DRIVER} (it wrote {seen[1:]!r}): {MEND}."
    )


async def test_headless_nothing_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under run_test (headless), as Textual's bell, nothing goes to the driver."""
    app = App[None]()
    async with app.run_test():
        written: list[str] = []
        monkeypatch.setattr(getattr(app, terminal.DRIVER), "write", written.append)
        assert not terminal.write(app, "\x07")
    assert written == []


async def test_a_driver_that_fails_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver shutting down (its writer gone) costs the notification, not the app."""

    def broken(data: str) -> None:
        raise AssertionError("Driver must be in application mode")

    app = Pretending()
    async with app.run_test():
        monkeypatch.setattr(getattr(app, terminal.DRIVER), "write", broken)
        app.pretend = True
        try:
            with caplog.at_level(logging.ERROR, "progress_tui.terminal"):
                assert not terminal.write(app, "\x07")
        finally:
            app.pretend = False
    assert "could not write to the terminal" in caplog.text


def test_no_driver_no_write() -> None:
    """An app not running has no driver: nothing is written, nothing raised."""
    assert not terminal.write(App[None](), "\x07")
