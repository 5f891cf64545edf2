"""The words progress-server and its clients share: the states, the messages and their
codec, the protocol's version, and the command lines' option convention.

Neither side owns it: the server (:mod:`progress_server`) and the clients
(:mod:`progress_client`, :mod:`progress_tui`) import it, and never each other.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("progress")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
