"""Backends: where the shared calculation lives. ``memory`` is the default."""

from .base import Backend, Change, Listener, Unsubscribe
from .memory import MemoryBackend

__all__ = ["Backend", "Change", "Listener", "MemoryBackend", "Unsubscribe"]
