"""Backends: where the shared calculation lives. ``memory`` is the default."""

from .base import Backend, Listener, Unsubscribe
from .memory import MemoryBackend

__all__ = ["Backend", "Listener", "MemoryBackend", "Unsubscribe"]
