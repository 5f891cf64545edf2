"""progress-tui: follow and drive the shared calculation from a terminal (Textual)."""

from progress_protocol import __version__

__all__ = ["__version__"]
