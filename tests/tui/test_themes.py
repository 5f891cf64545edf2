"""progress-tui's themes: --theme (PROGRESS_THEME) for a run, the palette's choice
remembered between runs, and the theme of a terminal of 16 colours."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from textual.command import CommandInput, CommandList, CommandPalette

from progress_tui import cli
from progress_tui.app import ProgressApp
from progress_tui.settings import Settings, SettingsFile
from tests.tui.looks import TERMINALS, lines, terminal
from tests.tui.scripted import connected_client, until
from tests.tui.test_cli import run_tui

SIZE = (80, 24)


def background(app: ProgressApp) -> str:
    """The colour the screen stands on, as the terminal gets it (its first cell's)."""
    first = lines(app, TERMINALS["truecolor"])[1][0]  # under the header
    assert first.style is not None and first.style.bgcolor is not None
    return first.style.bgcolor.name.upper()


def highlighted(app: ProgressApp) -> str:
    """The command (or theme) highlighted in the palette on screen, if any."""
    if not isinstance(app.screen, CommandPalette):
        return ""
    commands = app.screen.query_one(CommandList)
    if commands.highlighted is None:
        return ""
    prompt = commands.get_option_at_index(commands.highlighted).prompt
    return str(getattr(prompt, "plain", prompt)).split("\n")[0]


def searching(app: ProgressApp) -> str:
    """What the palette on screen searches for, as its input says."""
    if not isinstance(app.screen, CommandPalette):
        return ""
    return str(app.screen.query_one(CommandInput).placeholder)


def settings_in(directory: Path) -> SettingsFile:
    return SettingsFile(directory / "progress" / "progress-tui.toml")


@pytest.mark.parametrize("env", [False, True])
def test_an_unknown_theme_is_a_usage_error(env: bool) -> None:
    """--theme (or PROGRESS_THEME, then named) that is not a theme: a usage error that
    lists the themes, no traceback, no UI started."""
    result = run_tui(env={"PROGRESS_THEME": "nope"}) if env else run_tui("--theme", "nope")
    assert result.returncode == 2
    assert "'nope' is not a theme; the themes: progress-dark, progress-ansi," in result.stderr
    assert "nord" in result.stderr
    assert ("PROGRESS_THEME" in result.stderr) is env
    assert "Traceback" not in result.stderr


def test_the_theme_option_reaches_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """progress-tui --theme nord starts in nord, with the settings file in
    $XDG_CONFIG_HOME/progress/ to remember a choice in the palette."""
    started: list[tuple[str, Path | None]] = []

    def run(app: ProgressApp) -> None:
        started.append((app.theme, app.settings.path if app.settings else None))

    monkeypatch.setattr(ProgressApp, "run", run)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    log = str(tmp_path / "tui.log")
    result = CliRunner().invoke(cli.main, ["--theme", "nord", "--log-file", log])
    assert result.exit_code == 0, result.output
    assert started == [("nord", tmp_path / "progress" / "progress-tui.toml")]


async def test_a_theme_chosen_in_the_palette_is_remembered(tmp_path: Path) -> None:
    """ctrl+p, "theme", "nord": the screen takes nord's colours, the choice is written to
    the settings file, and the next run starts in it."""
    settings = settings_in(tmp_path)
    app = ProgressApp(connected_client(), settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "progress-dark"
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await pilot.press(*"theme")
        # ("Change theme" before Textual 7.)
        await until(
            pilot,
            lambda: highlighted(app) in ("Theme", "Change theme"),
            what=lambda: highlighted(app),
        )
        await pilot.press("enter")
        await until(pilot, lambda: searching(app) == "Search for themes…", what="the themes")
        await pilot.press(*"nord")
        await until(pilot, lambda: highlighted(app) == "nord", what=lambda: highlighted(app))
        await pilot.press("enter")
        await until(pilot, lambda: app.theme == "nord", what="nord")
        await until(pilot, lambda: not isinstance(app.screen, CommandPalette))
        await pilot.pause()
        assert background(app) == "#2E3440"
    assert settings.path.read_text(encoding="utf-8").endswith('theme = "nord"\n')
    again = ProgressApp(connected_client(), settings=settings)
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert again.theme == "nord"
        assert background(again) == "#2E3440"


async def test_the_theme_of_a_run_is_not_remembered(tmp_path: Path) -> None:
    """--theme is for its run: the file keeps the palette's last choice."""
    settings = settings_in(tmp_path)
    settings.save(Settings(theme="dracula"))
    app = ProgressApp(connected_client(), theme="nord", settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert background(app) == "#2E3440"
    assert settings.load() == Settings(theme="dracula")


async def test_sixteen_colours_start_in_the_terminals_own(tmp_path: Path) -> None:
    """In a terminal of 16 colours, the app starts in progress-ansi (the terminal's own
    colours) even with a theme remembered from another terminal; --theme still wins."""
    settings = settings_in(tmp_path)
    settings.save(Settings(theme="dracula"))
    with terminal(TERMINALS["16"]):
        app = ProgressApp(connected_client(), settings=settings)
        chosen = ProgressApp(connected_client(), theme="nord", settings=settings)
    assert (app.theme, chosen.theme) == ("progress-ansi", "nord")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("theme = [unclosed", "the settings in"),
        ("theme = 3\n", "not a string"),
        ('theme = "no-such-theme"\n', "'no-such-theme' is not one of the themes"),
        (b"\xff\xfe", "the settings in"),
        (None, "the settings in"),  # a directory where the file should be
    ],
)
async def test_a_bad_settings_file_is_left_out_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str | bytes | None, words: str
) -> None:
    """A settings file that is not TOML, holds a theme that is not a string or not a
    theme, or cannot be read: the app starts in its default theme, and the log says why
    (no traceback)."""
    settings = settings_in(tmp_path)
    settings.path.parent.mkdir(parents=True)
    if content is None:
        settings.path.mkdir()
    elif isinstance(content, bytes):
        settings.path.write_bytes(content)
    else:
        settings.path.write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        app = ProgressApp(connected_client(), settings=settings)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.theme == "progress-dark"
    assert any(words in record.getMessage() for record in caplog.records), caplog.text
    assert not any(record.exc_info for record in caplog.records)


async def test_a_choice_that_cannot_be_written_is_said_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the settings cannot be written (their directory is a file): the theme
    changes all the same, and the log says the choice is not remembered."""
    (tmp_path / "progress").write_text("a file", encoding="utf-8")
    settings = settings_in(tmp_path)
    app = ProgressApp(connected_client(), settings=settings)
    with caplog.at_level(logging.WARNING):
        async with app.run_test(size=SIZE) as pilot:
            app.theme = "nord"  # as the palette does
            await pilot.pause()
            assert background(app) == "#2E3440"
    assert any("cannot remember the settings" in r.getMessage() for r in caplog.records)
    assert not any(record.exc_info for record in caplog.records)
