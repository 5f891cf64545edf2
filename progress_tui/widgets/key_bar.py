"""The keys on one line, for terminals too narrow for Textual's Footer."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget

__all__ = ["KeyBar"]

#: Between two keys; the narrower one where all would not fit otherwise.
GAP = "  "
NARROW_GAP = " "


class KeyBar(Widget):
    """ "s Start  c Cancel  ? Help": as many of the shown keys as fit the width, whole.

    When not all fit, they stand closer (one space apart), then the keys that come last
    in ``priority`` are left out first; the others keep their order. A disabled key is
    dimmed, as in the Footer; in the terminal's colours (16, or none), where the app has
    no dim text (see :mod:`progress_tui.themes`), struck through and uncoloured.

    Args:
        priority: Actions from the most to the least useful; others come after them.
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

    def __init__(self, *, priority: Sequence[str] = (), id: str | None = None) -> None:
        super().__init__(id=id)
        self.priority = list(priority)

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        self.refresh()

    def items(self) -> list[tuple[str, Content]]:
        """(action, "key Description") for each key the Footer would show."""
        items = []
        actions = set()
        disabled = "strike $foreground" if self.has_pseudo_class("ansi") else "dim"
        for _, binding, enabled, _ in self.screen.active_bindings.values():
            if not binding.show or binding.action in actions:  # one key per action
                continue
            actions.add(binding.action)
            key = self.app.get_key_display(binding)
            item = Content.assemble((key, "bold $footer-key-foreground"), " ", binding.description)
            items.append((binding.action, item if enabled else item.stylize(disabled)))
        return items

    def fitting(self, width: int) -> Content:
        """The items that fit in ``width`` cells, closer together before dropping the
        least useful first."""
        items = self.items()

        def rank(position: int) -> tuple[int, int]:
            action = items[position][0]
            known = action in self.priority
            return (self.priority.index(action) if known else len(self.priority), position)

        kept = list(range(len(items)))
        while kept:
            shown = [items[position][1] for position in kept]
            for gap in (GAP, NARROW_GAP):
                line = Content(gap).join(shown)
                if line.cell_length <= width:
                    return line
            kept.remove(max(kept, key=rank))
        return Content("")

    def render(self) -> Content:
        return self.fitting(self.size.width)
