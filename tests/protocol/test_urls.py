"""URLs as people and logs may see them."""

from __future__ import annotations

from progress_protocol.urls import REDACTED, hide_our_tokens, safe_url


def test_our_tokens_are_hidden_wherever_they_are() -> None:
    """A token of ours in a URL's path (a token pasted in the wrong place), its query
    or its userinfo never shows; other text is left alone."""
    token = "prg_3q1N8v0oQ0mJ7pW5cY2xK9fHn4LrT6uA1bZ8dE3sG0k"
    assert safe_url(f"ws://host:3003/nope/{token}") == f"ws://host:3003/nope/{REDACTED}"
    assert token not in safe_url(f"ws://host/progress?x={token}")
    assert hide_our_tokens("program_prg") == "program_prg"  # not a token: no prefix start
    assert hide_our_tokens(f"said {token}.") == f"said {REDACTED}."
