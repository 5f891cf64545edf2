"""The file progress-tui remembers its settings in (no screen)."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

from progress_tui.settings import Settings, SettingsFile, default_settings_path


def test_the_file_is_in_the_xdg_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """$XDG_CONFIG_HOME/progress/progress-tui.toml; ~/.config without the variable."""
    assert default_settings_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/progress/progress-tui.toml")
    monkeypatch.setenv("HOME", "/home/alice")
    assert default_settings_path({}) == Path("/home/alice/.config/progress/progress-tui.toml")
    assert default_settings_path({"XDG_CONFIG_HOME": ""}) == default_settings_path({})


@pytest.mark.parametrize("theme", ["nord", 'a "quoted" \\ théme\n', None])
def test_what_is_saved_is_loaded(tmp_path: Path, theme: str | None) -> None:
    """What is saved is what the next run loads, any characters included; the file is
    TOML, and it is replaced whole: no temporary file is left beside it."""
    settings = SettingsFile(tmp_path / "progress" / "progress-tui.toml")
    assert settings.save(Settings(theme=theme))
    assert settings.load() == Settings(theme=theme)
    data = tomllib.loads(settings.path.read_text(encoding="utf-8"))
    assert data == ({} if theme is None else {"theme": theme})
    assert [path.name for path in settings.path.parent.iterdir()] == ["progress-tui.toml"]


def test_no_file_is_the_defaults_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No file yet (the first run): the defaults, and nothing to say."""
    with caplog.at_level(logging.DEBUG):
        assert SettingsFile(tmp_path / "none.toml").load() == Settings()
    assert not caplog.records


def test_unknown_keys_are_left_out(tmp_path: Path) -> None:
    """A key the app does not know (a later version's) is left out, the others kept."""
    path = tmp_path / "progress-tui.toml"
    path.write_text('theme = "nord"\nsomething = 3\n', encoding="utf-8")
    assert SettingsFile(path).load() == Settings(theme="nord")
