"""progress-server: one shared calculation, broadcast to every connected client."""

from __future__ import annotations

from progress_protocol import __version__

__all__ = ["__version__"]
