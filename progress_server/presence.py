"""Who is connected: one instance's roster, rosters merged over instances, and the
presence message. Pure.

A roster counts connections by (name, role, kind of client). Every instance shares its
own (through the backend), bounded to :data:`MAX_SHARED` entries, and every instance
announces the union: the first :data:`~progress_protocol.messages.MAX_PRESENCE_PEOPLE`
people by name, with the totals.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from progress_protocol.messages import (
    MAX_CLIENTS_COUNT,
    MAX_PRESENCE_PEOPLE,
    ROLES,
    Person,
    Presence,
    clean_name,
)

from .users import CLIENT_KINDS, User

__all__ = [
    "MAX_SHARED",
    "Key",
    "Roster",
    "key_of",
    "presence_of",
    "roster_from_json",
    "roster_to_json",
]

#: (name, role, kind of client); the name is None for clients that gave none.
Key = tuple[str | None, str, str]
#: Connections by key.
Roster = Counter[Key]
#: Entries of one instance's roster that it shares at most; past them, the rest are
#: counted under no name.
MAX_SHARED = 200


def key_of(user: User) -> Key:
    return (user.name, user.role, user.client)


def presence_of(rosters: Iterable[Roster]) -> Presence:
    """The presence message of these rosters together: people by name (the unnamed
    last), each with their kinds of client and connections."""
    people: dict[tuple[str | None, str], tuple[set[str], int]] = {}
    connections = 0
    for roster in rosters:
        for (name, role, kind), count in roster.items():
            if count <= 0:
                continue
            kinds, total = people.get((name, role), (set(), 0))
            kinds.add(kind)
            people[(name, role)] = (kinds, total + count)
            connections += count
    order = sorted(people, key=lambda pair: (pair[0] is None, (pair[0] or "").casefold(), pair))
    listed = tuple(
        Person(name, role, tuple(sorted(people[(name, role)][0])), people[(name, role)][1])
        for name, role in order[:MAX_PRESENCE_PEOPLE]
    )
    return Presence(people=listed, total=len(people), connections=connections)


def roster_to_json(roster: Roster) -> str:
    """One instance's roster as it shares it: at most :data:`MAX_SHARED` entries, the
    rest folded into the unnamed."""
    entries = sorted((key for key, count in roster.items() if count > 0), key=_order)
    shared: Roster = Counter({key: roster[key] for key in entries[:MAX_SHARED]})
    for _, role, kind in entries[MAX_SHARED:]:
        shared[(None, role, kind)] += roster[(_, role, kind)]
    rows: list[list[Any]] = [[*key, count] for key, count in shared.items()]
    return json.dumps(rows, separators=(",", ":"))


def roster_from_json(text: str | bytes) -> Roster:
    """Another instance's roster; entries that are not ours to read are skipped.

    Raises:
        ValueError: If it is not a JSON array.
    """
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise ValueError("not a roster")
    roster: Roster = Counter()
    for row in rows[: MAX_SHARED + len(ROLES) * len(CLIENT_KINDS)]:
        if (
            isinstance(row, list)
            and len(row) == 4
            and (row[0] is None or (isinstance(row[0], str) and clean_name(row[0]) == row[0]))
            and row[1] in ROLES
            and row[2] in CLIENT_KINDS
            and type(row[3]) is int
            and 0 < row[3] <= MAX_CLIENTS_COUNT
        ):
            roster[(row[0] or None, row[1], row[2])] += row[3]
    return roster


def _order(key: Key) -> tuple[bool, str, str, str]:
    name, role, kind = key
    return (name is None, (name or "").casefold(), role, kind)
