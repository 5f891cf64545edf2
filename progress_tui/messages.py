"""The Textual messages between the network worker and the UI."""

from __future__ import annotations

from textual.message import Message

__all__ = ["NewsArrived"]


class NewsArrived(Message):
    """The app's mailbox has news: take it. The worker posts one only while none is
    pending, so that a fast server never fills Textual's queue (which has no bound)."""
