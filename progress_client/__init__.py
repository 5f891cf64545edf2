"""The clients' side without a screen: the connection to progress-server with its
reconnect loop (:mod:`.client`), and ``progress-ctl`` for scripts (:mod:`.ctl`).
progress-tui builds its screen on top of it."""

from progress_protocol import __version__

__all__ = ["__version__"]
