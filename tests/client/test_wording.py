"""Facts worded for people: pure, no terminal needed."""

from __future__ import annotations

import time

import pytest

from progress_client.wording import (
    REPLACEMENT,
    UNKNOWN_TIME,
    attribution,
    canceled,
    clock_time,
    describe_exception,
    duration,
    moment,
    name_of,
    printable,
    started,
)
from progress_protocol.states import Attribution, State


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x1b[31mred", f"{REPLACEMENT}[2J{REPLACEMENT}[31mred"),
        ("line\rover", f"line{REPLACEMENT}over"),
        ("a\nb\tc", f"a{REPLACEMENT}b{REPLACEMENT}c"),
        ("\x9b31m", f"{REPLACEMENT}31m"),  # the 8-bit CSI
        ("\u202eevil", f"{REPLACEMENT}evil"),  # a bidi override
        ("\ud800", REPLACEMENT),  # a lone surrogate: no UTF-8 for it
    ],
)
def test_control_characters_are_replaced(text: str, shown: str) -> None:
    """Nothing that could drive a terminal, or fail to encode, is left."""
    assert printable(text) == shown
    printable(text).encode("utf-8")


@pytest.mark.parametrize("text", ["[/]", "[@click=app.quit]X[/]", "café ✔ 日本", "a b"])
def test_printable_text_is_left_as_it_is(text: str) -> None:
    """Markup and any printable character stay: showing them plainly is the widgets' job."""
    assert printable(text) == text


def test_long_text_is_cut_short() -> None:
    assert printable("x" * 2000, limit=10) == "x" * 10 + "…"


def test_an_exception_in_one_line() -> None:
    assert describe_exception(ValueError("bad\nvalue")) == "ValueError: bad value"
    assert describe_exception(ConnectionResetError()) == "ConnectionResetError"


def test_durations_read_at_any_scale() -> None:
    """Tenths below a minute, then two units at most."""
    assert [duration(s) for s in (0.42, 59.94, 125, 10_740, 273_600, -1, float("nan"))] == [
        "0.4 s",
        "59.9 s",
        "2 min 5 s",
        "2 h 59 min",
        "3 d 4 h",
        "0.0 s",
        "0.0 s",
    ]


def test_clock_time_is_local_and_never_fails() -> None:
    """The time of day by default, any pattern on demand; a time the platform cannot
    convert gets words rather than an exception."""
    when = time.mktime((2025, 3, 1, 14, 3, 7, 0, 0, -1))
    assert clock_time(when) == "14:03:07"
    assert clock_time(when, "%Y-%m-%d %H:%M:%S") == "2025-03-01 14:03:07"
    assert clock_time(1e20) == UNKNOWN_TIME == "an unknown time"


def test_a_moment_has_its_date_only_on_another_day() -> None:
    """Today: the time of day; another day: the date and the minute (no year when
    compact)."""
    when = time.mktime((2025, 3, 1, 14, 3, 7, 0, 0, -1))
    assert moment(when, now=when + 60) == "14:03:07"
    assert moment(when, now=when + 2 * 86400) == "2025-03-01 14:03"
    assert moment(when, now=when + 2 * 86400, compact=True) == "03-01 14:03"


ALICE = Attribution("a11ce", "alice@laptop")
BOB = Attribution("b0b", "bob@desk")


def test_who_did_it_in_one_wording() -> None:
    """ "by alice", "started by alice", "canceled by bob during IN_PROGRESS"; "(you)" or
    "you" for this client's own actions."""
    assert attribution(ALICE) == "by alice@laptop"
    assert attribution(ALICE, mine=("a11ce",)) == "by alice@laptop (you)"
    assert started(ALICE) == "started by alice@laptop"
    assert canceled(BOB, State.IN_PROGRESS) == "canceled by bob@desk during IN_PROGRESS"
    assert canceled(None, State.STARTING) == "canceled during STARTING"
    assert canceled(BOB, None, mine=("b0b",)) == "canceled by bob@desk (you)"
    assert canceled(None, None) == "canceled"
    assert name_of(BOB, mine=("b0b",), brief=True) == "you"
    assert name_of(Attribution(None, "http 10.0.0.1"), mine=("b0b",)) == "http 10.0.0.1"


def test_names_are_made_printable() -> None:
    """A name is server text: shown without its control characters."""
    assert attribution(Attribution("x", "eve\u202e")) == f"by eve{REPLACEMENT}"
