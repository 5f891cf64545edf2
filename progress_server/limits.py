"""Rate limiting: a token bucket per connection. Pure: the caller passes the time."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows ``rate`` events a second on average and ``burst`` at once.

    Args:
        rate: Tokens added per second.
        burst: The most tokens the bucket holds; it starts full.
        now: The time it is made, in seconds on a monotonic clock.
    """

    __slots__ = ("_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not (rate > 0 and burst >= 1):
            raise ValueError("need rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = now

    def take(self, now: float) -> bool:
        """Take one token if there is one; False means the event is over the limit."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._updated = now
        if self._tokens >= 1.0 - 1e-9:  # k/rate seconds later is k tokens, despite rounding
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False
