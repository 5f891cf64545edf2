"""Text broken into lines at word boundaries: pure, no Textual.

Rich folds a word longer than the line wherever the line ends ("ws://…/progres" then
"s"). Here a line breaks at spaces; a word longer than a whole line (a URL, a long
name) breaks after one of its own separators (the ``/`` of a URL, the ``@`` of
user@host), and is cut at the line's end only when it has none where it must break.
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.text import Text

__all__ = ["BREAK_AFTER", "wrap"]

#: Where a word too long for a line may break: after one of these.
BREAK_AFTER = frozenset("/@.:-_?&=,;")

_WORD = re.compile(r"\S+")


def wrap(text: Text, width: int) -> list[Text]:
    """``text`` (its styles kept) in lines of ``width`` cells at most.

    Args:
        text: One or more paragraphs, separated by newlines.
        width: Cells per line; less than 1 counts as 1.

    Returns:
        The lines, without the spaces at which they broke; one empty line for an
        empty text.
    """
    width = max(width, 1)
    lines: list[Text] = []
    start = 0
    for paragraph in text.plain.split("\n"):
        end = start + len(paragraph)
        lines.extend(text[left:right] for left, right in _spans(paragraph, start, width))
        start = end + 1
    return lines


def _spans(paragraph: str, offset: int, width: int) -> list[tuple[int, int]]:
    """Where each line of one paragraph starts and ends, as offsets into the text."""
    spans: list[tuple[int, int]] = []
    line: tuple[int, int] | None = None  # (start, end) within the paragraph
    for word in _WORD.finditer(paragraph):
        start, end = word.span()
        if line is not None:
            if cell_len(paragraph[line[0] : end]) <= width:
                line = (line[0], end)
                continue
            spans.append(line)
        # The word begins a line; one longer than a line breaks where it allows.
        while cell_len(paragraph[start:end]) > width:
            cut = _break(paragraph, start, end, width)
            spans.append((start, cut))
            start = cut
        line = (start, end)
    spans.append(line or (0, 0))
    return [(offset + start, offset + end) for start, end in spans]


def _break(paragraph: str, start: int, end: int, width: int) -> int:
    """Where a word too long for a line ends its first line: after its last separator
    that fits; otherwise (none fits) at the line's last cell."""
    fits = start
    for index in range(start, end):
        if cell_len(paragraph[start : index + 1]) > width:
            break
        fits = index + 1
    for cut in range(fits, start, -1):
        if paragraph[cut - 1] in BREAK_AFTER:
            return cut
    return max(fits, start + 1)  # a character wider than the line still takes one
