"""Backends: where the shared calculation lives. ``memory`` is the default."""
