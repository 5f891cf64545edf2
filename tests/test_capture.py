"""README's animation and the pictures of docs/clients.md come from docs/capture.py,
which drives a real server and real apps: it runs, and says what the docs say."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def load_capture() -> object:
    spec = importlib.util.spec_from_file_location("capture", ROOT / "docs" / "capture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["capture"] = module
    spec.loader.exec_module(module)
    return module


async def test_the_capture_shows_one_run_in_three_panes(tmp_path: Path) -> None:
    """Eight frames of three panes each, under 1 MB: everyone idle, then STARTING,
    IN_PROGRESS, CANCELED (by bob, in all three), a new run to SUCCESS; and the two
    pictures of docs/clients.md."""
    capture = load_capture()
    frames = await capture.three_panes()  # type: ignore[attr-defined]
    assert len(frames) == 8 and all(len(panes) == 3 for panes in frames)
    words = [
        "IDLE",
        "STARTING",
        "IN_PROGRESS",
        "CANCELED",
        "STARTING",
        "IN_PROGRESS",
        "ALMOST_DONE",
        "SUCCESS",
    ]
    for panes, word in zip(frames, words, strict=True):
        for pane in panes:
            assert word in pane, word
    assert all("3&#160;watching" in pane for pane in frames[0])
    assert "canceled&#160;by&#160;bob" in frames[3][0]
    picture = capture.animation(frames)  # type: ignore[attr-defined]
    assert len(picture.encode()) < 1_000_000
    assert len(re.findall(r'<g class="f\d+">', picture)) == 8
    await capture.narrow_and_reconnecting(tmp_path)  # type: ignore[attr-defined]
    assert "Reconnecting" in (tmp_path / "tui-reconnecting.svg").read_text()
    assert "IN_PROGRESS" in (tmp_path / "tui-40x12.svg").read_text()


def test_the_docs_show_the_pictures() -> None:
    """README opens with the animation; docs/clients.md shows the two pictures; they
    are in the repository."""
    readme = (ROOT / "README.md").read_text()
    assert readme.index("docs/images/three-panes.svg") < readme.index("## Quick start")
    clients = (ROOT / "docs" / "clients.md").read_text()
    for name in ("three-panes.svg", "tui-40x12.svg", "tui-reconnecting.svg"):
        assert (ROOT / "docs" / "images" / name).is_file()
    assert "images/tui-40x12.svg" in clients and "images/tui-reconnecting.svg" in clients
