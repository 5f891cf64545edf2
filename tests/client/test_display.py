"""Server text made safe to show: pure, no terminal needed."""

from __future__ import annotations

import pytest

from progress_client.display import REPLACEMENT, describe_exception, printable


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
