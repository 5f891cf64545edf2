"""``python -m progress_server``: the same as ``progress-server``."""

from .cli import main

main()
