"""The screens of progress-tui beside the main one, one module each."""

from .help_screen import HelpScreen

__all__ = ["HelpScreen"]
