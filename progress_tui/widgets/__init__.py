"""The widgets of progress-tui, one module each: import each from its module."""
