"""Facts worded for people, the same in progress-ctl and progress-tui. Pure, no I/O.

Who did it ("by alice@laptop"), the time of day, durations, text from the network made
safe to show, and exceptions in one line: one spelling each, so that the two clients
never drift apart. (A URL without its secrets is :func:`progress_protocol.urls.safe_url`.)
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Collection

from progress_protocol.messages import Person, Presence
from progress_protocol.states import Attribution, State

__all__ = [
    "NAME_IN_LIST",
    "REPLACEMENT",
    "UNKNOWN_TIME",
    "attribution",
    "canceled",
    "cells",
    "clock_time",
    "countdown",
    "cut",
    "describe_exception",
    "duration",
    "moment",
    "name_of",
    "person_label",
    "person_name",
    "printable",
    "started",
    "watchers",
    "watching",
    "you_are",
]

#: What stands in for a character that must not reach a terminal.
REPLACEMENT = "\N{REPLACEMENT CHARACTER}"

#: The words for a time the platform cannot convert.
UNKNOWN_TIME = "an unknown time"


def printable(text: str, limit: int = 1024) -> str:
    """``text`` with every non-printable character replaced, cut short past ``limit``.

    The decoder already refuses control characters in server messages; this is the
    second line of defence for the texts it does not check (a close reason, an
    exception's message) and for any future field. A raw ESC, CR or bidi override
    could rewrite what a terminal shows; a lone surrogate could not even be encoded.
    Markup is not this function's business: show the result as plain text
    (``rich.text.Text``, ``textual.content.Content``), never as markup.
    """
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else REPLACEMENT for char in text)


def describe_exception(exc: BaseException) -> str:
    """An exception's type and message in one line, for a log line or a sentence."""
    text = " ".join(str(exc).splitlines())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def duration(seconds: float) -> str:
    """A duration for a person, readable at any scale and never long: "0.4 s",
    "59.9 s", "2 min 5 s", "2 h 59 min", "3 d 4 h"."""
    if not seconds > 0:  # NaN too
        return "0.0 s"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    total = round(min(seconds, 1e12))
    if total < 3600:
        big, small = divmod(total, 60)
        unit, smaller = "min", "s"
    elif total < 86400:
        big, small = total // 3600, total % 3600 // 60
        unit, smaller = "h", "min"
    else:
        big, small = total // 86400, total % 86400 // 3600
        unit, smaller = "d", "h"
    return f"{big} {unit} {small} {smaller}" if small else f"{big} {unit}"


def countdown(seconds: float) -> str:
    """A wait counted down on screen, "2.3s": tenths and no space, so that it keeps its
    width as it ticks (:func:`duration` is for a wait said once)."""
    return f"{max(0.0, seconds):.1f}s"


def clock_time(timestamp: float, pattern: str = "%H:%M:%S") -> str:
    """A unix time as local time, "14:03:07" by default; the decoder bounds the times
    a server sends, and a time the platform cannot convert still gets words."""
    try:
        return time.strftime(pattern, time.localtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return UNKNOWN_TIME


def moment(timestamp: float, *, now: float, compact: bool = False) -> str:
    """The time of day, "14:03:07", with the date when it is not the day of ``now``:
    "2025-03-01 14:03", or "03-01 14:03" when ``compact``."""
    if clock_time(timestamp, "%Y-%m-%d") == clock_time(now, "%Y-%m-%d"):
        return clock_time(timestamp)
    return clock_time(timestamp, "%m-%d %H:%M" if compact else "%Y-%m-%d %H:%M")


def name_of(by: Attribution, mine: Collection[str] = (), *, brief: bool = False) -> str:
    """What a person is called: their name, printable; "(you)" after it when the client
    id is one of ``mine`` (this client's, on any of its connections), or "you" alone
    when ``brief`` (a narrow column stays narrow)."""
    if by.client_id in mine:
        return "you" if brief else f"{printable(by.name)} (you)"
    return printable(by.name)


def attribution(by: Attribution, mine: Collection[str] = ()) -> str:
    """Who did it: "by alice@laptop", "by alice@laptop (you)"."""
    return f"by {name_of(by, mine)}"


def started(by: Attribution, mine: Collection[str] = ()) -> str:
    """ "started by alice@laptop"."""
    return f"started {attribution(by, mine)}"


def canceled(by: Attribution | None, during: State | None, mine: Collection[str] = ()) -> str:
    """ "canceled by bob@desk during IN_PROGRESS"; each part only when it is known."""
    words = "canceled"
    if by is not None:
        words += f" {attribution(by, mine)}"
    if during is not None:
        words += f" during {during.value}"
    return words


def cells(text: str) -> int:
    """How many terminal cells ``text`` takes: two for a wide character (CJK,
    fullwidth), none for a combining one, one for the others."""
    if text.isascii():
        return len(text)
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return total


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` cells, ending with an ellipsis when it was cut."""
    if cells(text) <= limit:
        return text
    kept, used = [], 0
    for char in text:
        width = cells(char)
        if used + width > limit - 1:
            break
        kept.append(char)
        used += width
    return "".join(kept) + "…"


#: A name longer than this is cut with an ellipsis in a list of people.
NAME_IN_LIST = 20


def you_are(name: str | None, role: str | None, *, limit: int = NAME_IN_LIST) -> str:
    """Who the server takes this client for: "alice · operator", "viewer" (no name),
    "" (an older server said neither); the name in at most ``limit`` cells."""
    shown = cut(printable(name), limit) if name else ""
    if role is None:
        return shown
    return f"{shown} · {printable(role)}" if shown else printable(role)


def person_label(person: Person, *, limit: int = NAME_IN_LIST) -> str:
    """One person in a list: "alice", "bob (viewer)", "3 unnamed"; operators are the
    usual case and go without their role."""
    label = person_name(person, limit=limit)
    return label if person.role == "operator" else f"{label} ({printable(person.role)})"


def person_name(person: Person, *, limit: int = NAME_IN_LIST) -> str:
    """A person's name in a list, in ``limit`` cells at most: "alice", "3 unnamed"."""
    if person.name is None:
        return f"{person.connections} unnamed"
    return cut(printable(person.name), limit)


def watchers(presence: Presence) -> int:
    """How many are watching: each named person once, each unnamed connection once."""
    unnamed = [person for person in presence.people if person.name is None]
    return presence.total - len(unnamed) + sum(person.connections for person in unnamed)


def watching(presence: Presence, width: int | None = None) -> str:
    """Who is watching, in a line: "3 watching: alice, bob (viewer), ci-bot", cut to
    ``width`` cells with "+2 more" for those who do not fit, down to "3 watching"."""
    count = watchers(presence)
    head = f"{count} watching"
    labels = [person_label(person) for person in presence.people]
    if not labels:
        return head if count else "nobody watching"
    weights = [1 if person.name else person.connections for person in presence.people]
    for shown in range(len(labels), -1, -1):
        rest = count - sum(weights[:shown])
        parts = labels[:shown] + ([f"+{rest} more"] if rest else [])
        if shown == 0:
            break
        line = f"{head}: {', '.join(parts)}"
        if width is None or cells(line) <= width:
            return line
    return head
