"""Lines broken at word boundaries: spaces first, then a long word's own separators."""

from __future__ import annotations

import pytest
from rich.text import Text

from progress_tui.wrapping import wrap


def lines(text: str, width: int) -> list[str]:
    return [line.plain for line in wrap(Text(text), width)]


def test_breaks_at_spaces() -> None:
    assert lines("one two three four", 9) == ["one two", "three", "four"]


def test_a_url_breaks_after_a_slash() -> None:
    assert lines("Connected to ws://127.0.0.1:3003/progress now", 22) == [
        "Connected to",
        "ws://127.0.0.1:3003/",
        "progress now",
    ]


def test_a_name_breaks_after_its_at_sign() -> None:
    assert lines("bob@desk-with-a-long-hostname", 14) == ["bob@desk-with-", "a-long-", "hostname"]


def test_a_word_without_separators_is_cut_at_the_edge() -> None:
    assert lines("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def test_wide_characters_count_as_two_cells() -> None:
    assert lines("日本語のテキスト", 6) == ["日本語", "のテキ", "スト"]


@pytest.mark.parametrize("width", [0, 1])
def test_a_width_below_one_still_makes_progress(width: int) -> None:
    assert lines("ab", width) == ["a", "b"]


def test_paragraphs_and_styles_are_kept() -> None:
    text = Text.assemble(("12:00:00 ", "dim"), ("IDLE\nnext line", "bold"))
    wrapped = wrap(text, 40)
    assert [line.plain for line in wrapped] == ["12:00:00 IDLE", "next line"]
    assert wrapped[0].spans[0].style == "dim"


def test_empty_text_is_one_empty_line() -> None:
    assert lines("", 10) == [""]
