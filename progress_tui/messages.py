"""The Textual messages between the network worker and the UI."""

from __future__ import annotations

from textual.message import Message

from progress_client.client import ClientEvent

__all__ = ["ClientEventReceived"]


class ClientEventReceived(Message):
    """The connection worker met a client event; the app applies it to its state."""

    def __init__(self, event: ClientEvent) -> None:
        super().__init__()
        self.event = event
