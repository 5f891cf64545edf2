"""The screens of progress-tui beside the main one, one module each."""
