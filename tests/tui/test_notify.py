"""progress-tui tells of a run's end (--notify, n), driven with Pilot against real
servers whose calculations move when the test says (:class:`SteppedServer`).

Under Pilot the app is headless: the bell and the desktop notification are written to
no terminal (tests/tui/test_terminal.py checks the seam, and tests/tui/test_e2e.py sees
the bytes in tmux); what is checked here is which ends are told, in the app's own
notification.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from textual.widgets import Footer
from websockets.asyncio.client import ClientConnection

from progress_protocol.states import State
from progress_tui import cli
from progress_tui.app import FOOTER_FITS_NOTIFY, ProgressApp
from progress_tui.ends import Notify
from progress_tui.screens.help_screen import HelpScreen
from progress_tui.widgets.key_bar import KeyBar
from tests.helpers import SteppedServer, Watcher, join, send_json, states_until
from tests.tui.scripted import connected_client, eventually, rendered
from tests.tui.test_app import SIZE, connected, make_app, notified, showing

#: The titles of the app's notifications of an end.
END_TITLES = ("Calculation done", "Calculation canceled")


def ends_told(made: list[str]) -> list[str]:
    return [text for text in made if text.startswith(END_TITLES)]


@pytest.fixture
async def bob(stepped: SteppedServer) -> AsyncIterator[ClientConnection]:
    """Another client of the server: its runs are not this app's. It reads what it is
    sent (a client that never reads has its close wait for websockets' 10 s timeout:
    the unread messages hold the server's close frame back)."""
    watcher = await Watcher.join(stepped.url)
    yield watcher.ws
    await watcher.close()


async def own_run(pilot: Any, server: SteppedServer) -> str:
    """s, and the run through to SUCCESS (three steps: 3 min by the server's clock);
    its id."""
    app = pilot.app
    await pilot.press("s")
    await showing(pilot, State.STARTING)
    await server.step(3)
    await showing(pilot, State.SUCCESS)
    return str(app.snapshot.calculation_id)


async def others_run(pilot: Any, server: SteppedServer, bob: ClientConnection) -> str:
    """Another client starts a run and cancels it during IN_PROGRESS (1 min in); its id."""
    app = pilot.app
    await send_json(bob, {"action": "start"})
    await showing(pilot, State.STARTING)
    await server.step()
    await showing(pilot, State.IN_PROGRESS)
    await send_json(bob, {"action": "cancel"})
    await showing(pilot, State.CANCELED)
    return str(app.snapshot.calculation_id)


async def test_mine_tells_of_a_run_it_started_not_of_anothers(
    stepped: SteppedServer, bob: ClientConnection
) -> None:
    """The default: the end of the run s started is told, with its id and duration; a
    run someone else started and canceled is not."""
    app = make_app(stepped.url)
    assert app.ends.choice is Notify.MINE
    async with app.run_test(size=SIZE) as pilot:
        made = notified(app)
        await connected(pilot)
        calculation_id = await own_run(pilot, stepped)
        await others_run(pilot, stepped, bob)
    assert ends_told(made) == [
        f"Calculation done: Calculation {calculation_id} done (SUCCESS) after 3 min"
    ]


async def test_a_cancel_from_here_is_not_told(stepped: SteppedServer) -> None:
    """s then c in this app: it knows, no notification of that end (even with all)."""
    app = make_app(stepped.url, notify=Notify.ALL)
    async with app.run_test(size=SIZE) as pilot:
        made = notified(app)
        await connected(pilot)
        await pilot.press("s")
        await showing(pilot, State.STARTING)
        await pilot.press("c")
        await showing(pilot, State.CANCELED)
        await own_run(pilot, stepped)  # the next one, which ends by itself, is told
    assert [text.split(":")[0] for text in ends_told(made)] == ["Calculation done"]


async def test_all_tells_of_every_run(stepped: SteppedServer, bob: ClientConnection) -> None:
    """--notify all: another's run is told too, with who canceled it and when."""
    app = make_app(stepped.url, notify=Notify.ALL)
    async with app.run_test(size=SIZE) as pilot:
        made = notified(app)
        await connected(pilot)
        mine = await own_run(pilot, stepped)
        others = await others_run(pilot, stepped, bob)
    (told_mine, told_others) = ends_told(made)
    assert told_mine.startswith(f"Calculation done: Calculation {mine} done (SUCCESS)")
    assert told_others.startswith(f"Calculation canceled: Calculation {others} canceled by ")
    assert told_others.endswith(" during IN_PROGRESS, after 1 min")


async def test_off_tells_of_none(stepped: SteppedServer) -> None:
    """--notify off: not even the end of a run this app started."""
    app = make_app(stepped.url, notify=Notify.OFF)
    async with app.run_test(size=SIZE) as pilot:
        made = notified(app)
        await connected(pilot)
        await own_run(pilot, stepped)
    assert ends_told(made) == []


async def test_n_cycles_the_setting_and_says_it(
    stepped: SteppedServer, bob: ClientConnection
) -> None:
    """n: mine -> all (another's run is then told) -> off (not even this app's own) ->
    mine; each time a short notification says the new setting."""
    app = make_app(stepped.url)
    async with app.run_test(size=SIZE) as pilot:
        made = notified(app)
        await connected(pilot)
        await pilot.press("n")
        assert made[-1] == "Notify: all: when any run ends"
        others = await others_run(pilot, stepped, bob)
        (told,) = ends_told(made)
        assert told.startswith(f"Calculation canceled: Calculation {others} canceled by ")
        await pilot.press("n")
        assert made[-1] == "Notify: off: never"
        await own_run(pilot, stepped)
        assert len(ends_told(made)) == 1
        await pilot.press("n")
        assert made[-1] == "Notify: mine: when a run you started ends"
        assert app.ends.choice is Notify.MINE


async def test_a_run_over_before_it_joined_is_not_told(stepped: SteppedServer) -> None:
    """A run that ended before the app connected (it never saw it running) is not
    news, even with --notify all, nor after a resync (r) repeats it."""
    ws, _, _ = await join(stepped.url)
    await send_json(ws, {"action": "start"})
    await states_until(ws, "STARTING")
    await stepped.step(3)
    await states_until(ws, "SUCCESS")
    await ws.close()
    app = make_app(stepped.url, notify=Notify.ALL)
    async with app.run_test(size=SIZE) as pilot:
        made = notified(app)
        await connected(pilot)
        await showing(pilot, State.SUCCESS)
        await pilot.press("r")  # the server answers it before the start that follows
        await own_run(pilot, stepped)  # and then, one it saw: told
    assert [text.split(":")[0] for text in ends_told(made)] == ["Calculation done"]


async def test_the_help_screen_and_the_palette_name_n() -> None:
    """? lists n and the setting now; the palette has Notify, which cycles it."""
    client = connected_client()
    app = ProgressApp(client, notify=Notify.ALL)
    async with app.run_test(size=SIZE) as pilot:
        await client.played(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)

        def said() -> None:
            text = " ".join(rendered(app, app.screen.query_one("VerticalScroll")).split())
            assert "n When to be told that a run ended" in text
            assert "Notify all: when any run ends (n changes it)" in text

        await eventually(pilot, said)
        await pilot.press("escape")
        (command,) = [c for c in app.get_system_commands(app.screen) if c.title == "Notify"]
        command.callback()
        assert app.ends.choice is Notify.OFF


@pytest.mark.parametrize(("width", "shown"), [(40, False), (79, True)])
async def test_the_key_bar_names_n_where_it_fits(width: int, shown: bool) -> None:
    """At 40 columns n gives way (q Quit stays); wider, it is named."""
    client = connected_client()
    app = ProgressApp(client)
    async with app.run_test(size=(width, 24)) as pilot:
        await client.played(pilot)

        def keys() -> None:
            bar = rendered(app, app.query_one(KeyBar))
            assert ("n Notify" in bar) is shown, bar
            if width == 40:
                assert " ".join(bar.split()) == "s Start c Cancel l Log h Hist ? q Quit"

        await eventually(pilot, keys)


async def test_the_footer_names_n_only_where_q_still_fits() -> None:
    """From 80 columns the Footer shows the keys: n only where q Quit stays whole
    beside it (resized there and back), and n works where it is not shown."""
    client = connected_client()
    app = ProgressApp(client)
    async with app.run_test(size=(120, 24)) as pilot:
        await client.played(pilot)
        for width, shown in ((120, True), (FOOTER_FITS_NOTIFY, True), (84, False), (80, False)):
            await pilot.resize_terminal(width, 24)

            def footer(width: int = width, shown: bool = shown) -> None:
                keys = rendered(app, app.query_one(Footer))
                assert "q Quit" in keys, f"at {width}: {keys}"
                assert ("n Notify" in keys) is shown, f"at {width}: {keys}"

            await eventually(pilot, footer)
        made = notified(app)
        await pilot.press("n")
        assert made == ["Notify: all: when any run ends"]


@pytest.mark.parametrize(
    ("args", "env", "choice"),
    [
        ([], {}, Notify.MINE),
        (["--notify", "off"], {}, Notify.OFF),
        ([], {"PROGRESS_NOTIFY": "all"}, Notify.ALL),
    ],
)
def test_the_option_and_its_variable_reach_the_app(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: list[str],
    env: dict[str, str],
    choice: Notify,
) -> None:
    """--notify, else PROGRESS_NOTIFY, else mine: the app gets it."""
    got: list[Notify] = []
    monkeypatch.setattr(ProgressApp, "run", lambda app: got.append(app.ends.choice))
    log = str(tmp_path / "tui.log")
    result = CliRunner().invoke(cli.main, ["--log-file", log, *args], env=env)
    assert result.exit_code == 0, result.output
    assert got == [choice]


def test_a_bad_value_is_a_usage_error_naming_its_variable() -> None:
    result = CliRunner().invoke(cli.main, [], env={"PROGRESS_NOTIFY": "loud"})
    assert result.exit_code == 2
    assert "PROGRESS_NOTIFY" in result.output and "'loud' is not one of" in result.output
