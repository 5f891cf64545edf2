"""The bell and the desktop notification's sequences: pure, no terminal needed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from progress_client.notifications import (
    BEL,
    BODY_LIMIT,
    TITLE,
    TITLE_LIMIT,
    EndWatch,
    Flavor,
    Notice,
    alert,
    clean,
    desktop,
    ended,
    flavor,
    passthrough,
)
from progress_client.wording import REPLACEMENT
from progress_protocol.states import Attribution, State, StateSnapshot

ESC = "\x1b"
NOTICE = Notice("progress", "Calculation 3b6188a98e7a done (SUCCESS) after 6.0 s")
XTERM = {"TERM": "xterm-256color"}
#: tmux's own variables inside a pane, in a terminal that says nothing of itself.
TMUX = {"TERM": "tmux-256color", "TERM_PROGRAM": "tmux", "TMUX": "/tmp/tmux-1000/default,1,0"}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"TERM_PROGRAM": "iTerm.app", "TERM": "xterm-256color"}, Flavor.OSC_9),
        ({"TERM_PROGRAM": "WezTerm", "TERM": "xterm-256color"}, Flavor.OSC_9),
        ({"KITTY_WINDOW_ID": "1", "TERM": "xterm-kitty"}, Flavor.OSC_9),
        ({"TERM": "xterm-kitty"}, Flavor.OSC_9),  # kitty, through ssh
        ({"LC_TERMINAL": "iTerm2", "TERM": "xterm-256color"}, Flavor.OSC_9),  # iTerm2, ssh
        ({**TMUX, "ITERM_SESSION_ID": "w0t0p0:1"}, Flavor.OSC_9),  # tmux in iTerm2
        ({**TMUX, "WEZTERM_PANE": "3"}, Flavor.OSC_9),
        ({"TERM_PROGRAM": "ghostty", "TERM": "xterm-ghostty"}, Flavor.OSC_777),
        ({"TERM": "foot"}, Flavor.OSC_777),
        ({"VTE_VERSION": "7600", "TERM": "xterm-256color"}, Flavor.OSC_777),
        ({"WT_SESSION": "abc", "TERM": "xterm-256color"}, Flavor.OSC_777),  # its OSC 9 is ConEmu's
        ({"TERM": "rxvt-unicode-256color"}, Flavor.OSC_777),
        (TMUX, Flavor.OSC_777),
        ({}, Flavor.OSC_777),
        ({"TERM": "linux"}, Flavor.NONE),  # the console would print it
        ({"TERM": "dumb", "TERM_PROGRAM": "WezTerm"}, Flavor.NONE),
        ({"KITTY_WINDOW_ID": ""}, Flavor.OSC_777),  # set but empty says nothing
    ],
)
def test_each_terminal_gets_the_notification_it_knows(
    environ: dict[str, str], expected: Flavor
) -> None:
    """OSC 9 for iTerm2, kitty and WezTerm (tmux's own TERM_PROGRAM hides none of them:
    their other variables tell); none where it would be printed; OSC 777 otherwise."""
    assert flavor(environ) is expected


def test_osc_777_carries_the_title_and_the_body() -> None:
    assert desktop(NOTICE, XTERM) == (
        f"{ESC}]777;notify;progress;Calculation 3b6188a98e7a done (SUCCESS) after 6.0 s{BEL}"
    )


def test_osc_9_carries_the_body_alone() -> None:
    environ = {"TERM_PROGRAM": "iTerm.app"}
    assert desktop(NOTICE, environ) == (
        f"{ESC}]9;Calculation 3b6188a98e7a done (SUCCESS) after 6.0 s{BEL}"
    )


def test_no_notification_where_it_would_be_printed() -> None:
    """On the Linux console the bell rings alone."""
    assert desktop(NOTICE, {"TERM": "linux"}) == ""
    assert alert(NOTICE, {"TERM": "linux"}) == BEL


def test_the_bell_comes_first_and_is_never_wrapped() -> None:
    """Inside tmux the bell stays a bare BEL (tmux rings it itself); only the OSC goes
    through the passthrough."""
    sequences = alert(NOTICE, TMUX)
    assert sequences.startswith(BEL + f"{ESC}Ptmux;")
    assert sequences == BEL + desktop(NOTICE, TMUX)


def test_inside_tmux_the_notification_is_passed_through() -> None:
    """ESC P tmux; the sequence with each ESC doubled, ESC \\: tmux hands it on as it is."""
    assert desktop(NOTICE, TMUX) == (
        f"{ESC}Ptmux;{ESC}{ESC}]777;notify;progress;"
        f"Calculation 3b6188a98e7a done (SUCCESS) after 6.0 s{BEL}{ESC}\\"
    )
    assert passthrough(f"{ESC}]9;a{ESC}\\") == f"{ESC}Ptmux;{ESC}{ESC}]9;a{ESC}{ESC}\\{ESC}\\"


HOSTILE = [
    "bob\x07\x1b]777;notify;pwned;gotcha\x07",  # ends ours, starts its own
    "bob\x1b\\\x1b[2J",  # ST, then clears the screen
    "bob\x9c\x9d0;title\x9c",  # the 8-bit ST and OSC
    "bob\x7f\x00\r\n\t",
    "bob;evil;fields",
    "bob\u202e\u2028",  # a bidi override, a line separator
]


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("environ", [XTERM, TMUX, {"TERM_PROGRAM": "iTerm.app"}])
def test_a_peers_text_cannot_end_or_start_a_sequence(name: str, environ: dict[str, str]) -> None:
    """Whatever a name holds, the sequence holds exactly its own framing: one OSC (in
    tmux: one passthrough), ended once, its fields where they belong."""
    sequence = desktop(Notice(name, f"canceled by {name}"), environ)
    inner = sequence
    if "TMUX" in environ:
        assert sequence.startswith(f"{ESC}Ptmux;") and sequence.endswith(f"{ESC}\\")
        inner = sequence[len(f"{ESC}Ptmux;") : -2].replace(ESC + ESC, ESC)
    assert inner.count(ESC) == 1 and inner.startswith(f"{ESC}]")
    assert inner.count(BEL) == 1 and inner.endswith(BEL)
    assert not re.search("[\x00-\x1f\x7f-\x9f]", inner[2:-1])
    if environ is XTERM or "TMUX" in environ:
        assert inner.count(";") == 3  # 777;notify;title;body
    else:
        assert inner.count(";") == 1  # 9;body


def test_clean_takes_out_what_could_drive_a_terminal() -> None:
    assert clean("bob\x07\x1b]2;x\x9c;y", 64) == "bob]2xy"
    assert clean("bo\u202eb", 64) == f"bo{REPLACEMENT}b"
    assert clean("  alice  ", 64) == "alice"


@given(st.text())
def test_clean_leaves_no_control_character_nor_separator(text: str) -> None:
    cleaned = clean(text, 32)
    assert not re.search("[\x00-\x1f\x7f-\x9f;]", cleaned)
    assert len(cleaned) <= 33  # the limit, and an ellipsis
    cleaned.encode("utf-8")  # no lone surrogate


def test_title_and_body_are_bounded() -> None:
    sequence = desktop(Notice("t" * 1000, "b" * 10_000), XTERM)
    title, body = sequence.removesuffix(BEL).split(";")[2:]
    assert title == "t" * TITLE_LIMIT + "…"
    assert body == "b" * BODY_LIMIT + "…"


START = 1_700_000_000.0
ALICE = Attribution("a11ce", "alice@laptop")
BOB = Attribution("b0b", "bob@desk")


def final(state: State, **fields: object) -> StateSnapshot:
    return StateSnapshot(state, "3b6188a98e7a", 4, START + 6.0, 2.0, started_at=START, **fields)  # type: ignore[arg-type]


def test_the_wording_of_a_success() -> None:
    notice = ended(final(State.SUCCESS, started_by=ALICE))
    assert notice == Notice(TITLE, "Calculation 3b6188a98e7a done (SUCCESS) after 6.0 s")


def test_the_wording_of_a_cancel_names_who_and_when() -> None:
    snapshot = final(State.CANCELED, by=BOB, canceled_during=State.IN_PROGRESS)
    assert ended(snapshot).body == (
        "Calculation 3b6188a98e7a canceled by bob@desk during IN_PROGRESS, after 6.0 s"
    )
    assert ended(snapshot, mine=("b0b",)).body == (
        "Calculation 3b6188a98e7a canceled by bob@desk (you) during IN_PROGRESS, after 6.0 s"
    )


def test_the_wording_without_a_start_time_or_a_canceler() -> None:
    snapshot = StateSnapshot(State.CANCELED, "abc", 3, START, 2.0)
    assert ended(snapshot).body == "Calculation abc canceled"


def state(kind: State, calculation_id: str | None = "run1", seq: int = 1) -> StateSnapshot:
    return StateSnapshot(kind, calculation_id, seq, START, 2.0)


def test_an_end_seen_coming_counts_once() -> None:
    """Running, then its end: told once, even when the final state comes again."""
    watch = EndWatch()
    assert not watch.seen(state(State.IDLE, None, 0))
    assert not watch.seen(state(State.STARTING))
    assert not watch.seen(state(State.IN_PROGRESS, seq=2))
    assert watch.seen(state(State.SUCCESS, seq=3))
    assert not watch.seen(state(State.SUCCESS, seq=3))  # a resync repeats it


def test_a_run_already_over_is_not_an_end_seen() -> None:
    """Connected after the end, or an end of another calculation than the one seen
    running (the server restarted): nothing to tell."""
    watch = EndWatch()
    assert not watch.seen(state(State.CANCELED))
    assert not watch.seen(state(State.STARTING, "run2"))
    assert not watch.seen(state(State.SUCCESS, "run3"))
    assert watch.seen(state(State.SUCCESS, "run2"))


def test_a_followed_calculation_counts_without_a_running_state() -> None:
    """A run this client started, whose running states it never drew, still counts."""
    watch = EndWatch()
    watch.follow("run1")
    assert watch.seen(state(State.SUCCESS))
