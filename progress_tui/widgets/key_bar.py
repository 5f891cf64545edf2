"""The keys on one line, for terminals too narrow for Textual's Footer."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget

__all__ = ["KeyBar"]

#: Between two keys; the narrower one where all would not fit otherwise.
GAP = "  "
NARROW_GAP = " "


@dataclass(frozen=True, slots=True)
class Key:
    """One key as the bar may show it: "r Resync", or shorter, "? " alone."""

    action: str
    key: str
    description: str
    short: str
    enabled: bool
    #: How a disabled key looks: struck through, and dim where the app has dim text
    #: (not in the terminal's colours, 16 or none: see :mod:`progress_tui.themes`).
    disabled: str

    def content(self, *, short: bool) -> Content:
        description = self.short if short else self.description
        key = Content.styled(self.key, "bold $footer-key-foreground")
        item = Content.assemble(key, " ", description) if description else key
        return item if self.enabled else item.stylize(self.disabled)


class KeyBar(Widget):
    """ "s Start  c Cancel  ? Help        q Quit": as many of the shown keys as fit the
    width, whole, the pinned ones (quit) always, at the right end.

    When not all fit: the optional keys go first (the help screen has them); then the
    keys stand closer (one space apart), take their short descriptions ("? Help"
    becomes "?"), and those that come last in ``priority`` are left out, one by one,
    until the rest fit. The others keep their order. A disabled key is dimmed, as in
    the Footer; in the terminal's colours (16, or none), where the app has no dim text
    (see :mod:`progress_tui.themes`), struck through and uncoloured.

    Args:
        priority: Actions from the most to the least useful; others come after them.
        pinned: Actions always shown, at the right end (quit).
        optional: Actions shown only where every key fits with its whole description.
        short: A shorter description of an action, for narrow widths ("": the key alone).
    """

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        /* No right padding: the last key may end at the edge (one more fits). */
        padding: 0 0 0 1;
        background: $footer-background;
        color: $footer-description-foreground;
    }
    """

    def __init__(
        self,
        *,
        priority: Sequence[str] = (),
        pinned: Collection[str] = (),
        optional: Collection[str] = (),
        short: Mapping[str, str] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.priority = list(priority)
        self.pinned = frozenset(pinned)
        self.optional = frozenset(optional)
        self.short = dict(short or {})

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        self.refresh()

    def keys(self) -> list[Key]:
        """Each key the Footer would show, one per action, in its order."""
        keys = []
        actions = set()
        # Struck through, so that it reads as unavailable in any terminal; dim too where
        # the app has dim text (not in the terminal's colours: see themes.py).
        disabled = "strike $foreground" if self.has_pseudo_class("ansi") else "dim strike"
        for _, binding, enabled, _ in self.screen.active_bindings.values():
            if not binding.show or binding.action in actions:  # one key per action
                continue
            actions.add(binding.action)
            description = binding.description
            short = self.short.get(binding.action, description)
            key = self.app.get_key_display(binding)
            keys.append(Key(binding.action, key, description, short, enabled, disabled))
        return keys

    def fitting(self, width: int) -> Content:
        """The keys that fit in ``width`` cells: closer together, then shorter, before
        the least useful are left out; the pinned ones at the right end."""
        keys = self.keys()
        pinned = [key for key in keys if key.action in self.pinned]
        others = [key for key in keys if key.action not in self.pinned]

        def rank(key: Key) -> tuple[int, int]:
            known = key.action in self.priority
            position = self.priority.index(key.action) if known else len(self.priority)
            return (position, others.index(key))

        line = self._line(others, pinned, width, short=False)
        if line is not None:
            return line
        kept = [key for key in others if key.action not in self.optional]
        while True:
            for short in (False, True):
                line = self._line(kept, pinned, width, short=short)
                if line is not None:
                    return line
            if not kept:
                # Not even the pinned keys fit whole: as much of them as there is room.
                return Content(NARROW_GAP).join(k.content(short=True) for k in pinned)
            kept.remove(max(kept, key=rank))

    @staticmethod
    def _line(left: list[Key], right: list[Key], width: int, *, short: bool) -> Content | None:
        """``left`` then ``right`` at the right end, if they fit in ``width`` cells."""
        for gap in (GAP, NARROW_GAP) if not short else (NARROW_GAP,):
            start = Content(gap).join(key.content(short=short) for key in left)
            end = Content(gap).join(key.content(short=short) for key in right)
            between = len(gap) if left and right else 0
            room = width - start.cell_length - end.cell_length
            if room >= between:
                return Content.assemble(start, " " * room, end) if right else start
        return None

    def render(self) -> Content:
        return self.fitting(self.size.width)
