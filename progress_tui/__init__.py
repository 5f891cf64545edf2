"""progress-tui and progress-ctl: the clients of progress-server."""

from progress_server import __version__

__all__ = ["__version__"]
