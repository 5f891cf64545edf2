"""Backends: where the shared calculation lives. ``memory`` is the default."""

from .base import Backend, BackendUnavailable, Change, CountListener, Listener, Unsubscribe
from .memory import MemoryBackend

__all__ = [
    "Backend",
    "BackendUnavailable",
    "Change",
    "CountListener",
    "Listener",
    "MemoryBackend",
    "Unsubscribe",
]
