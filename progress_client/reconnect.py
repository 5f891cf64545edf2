"""When to try again: exponential backoff with full jitter. Pure, no I/O.

Every client backs off by this policy, progress-tui's included: change the backoff
here (progress-tui's --reconnect-initial and --reconnect-cap set its two numbers;
which URL it waits for is :mod:`.failover`'s business).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ReconnectPolicy"]


@dataclass
class ReconnectPolicy:
    """Exponential backoff with full jitter, reset after a successful connection.

    The n-th delay in a row is drawn uniformly from ``[0, min(cap, initial * 2**(n-1))]``,
    so many clients that lost the same server do not come back at the same instant.

    Args:
        initial: The ceiling of the first delay, in seconds.
        cap: The largest ceiling, in seconds.
        random: Draws a float in [0, 1); tests pass a fixed one.
    """

    initial: float = 0.5
    cap: float = 10.0
    random: Callable[[], float] = field(default=random.random, repr=False)
    attempts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.cap >= self.initial):
            raise ValueError("need 0 < initial <= cap")

    def ceiling(self) -> float:
        """The largest delay the next failure can draw."""
        return min(self.cap, self.initial * 2.0 ** min(self.attempts, 64))

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next try."""
        delay = float(self.random()) * self.ceiling()
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """A connection succeeded: the next failure starts from ``initial`` again."""
        self.attempts = 0
