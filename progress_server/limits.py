"""Rate limits: token buckets, per connection and per address. Pure: the caller passes
the time."""

from __future__ import annotations

import enum
from collections import OrderedDict

__all__ = ["AddressLimits", "MessageBudget", "TokenBucket", "Verdict"]


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

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled to ``burst``: it remembers nothing any more."""
        return self._tokens + max(0.0, now - self._updated) * self.rate >= self.burst


class Verdict(enum.Enum):
    """What to do with one frame from a client."""

    ALLOW = "allow"
    REFUSE = "refuse"  # over the rate: drop it (and say so, for a message)
    CLOSE = "close"  # over the rate for too long: a flood, close with 1008


class MessageBudget:
    """One connection's budget, shared by its messages and its control frames.

    ``rate`` frames a second pass, ``burst`` at once. Past that, frames are refused,
    and each refusal draws on a second bucket of ``tolerance`` (refilled at the same
    rate); when that one is empty too, the client is flooding.

    A ping costs the server a pong as surely as a message costs a reply, so pings
    and pongs draw on the same budget as messages.
    """

    __slots__ = ("_patience", "_rate")

    def __init__(self, rate: float, burst: int, tolerance: int, now: float) -> None:
        self._rate = TokenBucket(rate, burst, now)
        self._patience = TokenBucket(rate, tolerance, now)

    def take(self, now: float) -> Verdict:
        if self._rate.take(now):
            return Verdict.ALLOW
        if self._patience.take(now):
            return Verdict.REFUSE
        return Verdict.CLOSE


class AddressLimits:
    """A token bucket per source address, for requests that come on short connections
    (the HTTP actions), where a per-connection budget would restart every time.

    Memory is bounded: at most ``max_addresses`` buckets are kept; the least recently
    used one goes first, and a bucket that has refilled is the same as none.

    Args:
        rate: Requests per second per address, on average.
        burst: Requests per address at once.
        max_addresses: Addresses remembered at most.
    """

    def __init__(self, rate: float, burst: int, *, max_addresses: int = 10_000) -> None:
        if max_addresses < 1:
            raise ValueError("need max_addresses >= 1")
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, address: str, now: float) -> bool:
        """Take one token for ``address``; False means the request is over the limit."""
        bucket = self._buckets.get(address)
        if bucket is None:
            while len(self._buckets) >= self.max_addresses:
                self._buckets.popitem(last=False)
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(address)
        allowed = bucket.take(now)
        self._forget_refilled(now)
        return allowed

    def _forget_refilled(self, now: float) -> None:
        """Drop the oldest buckets that have refilled, a few at a time."""
        for _ in range(2):
            if not self._buckets:
                return
            address, bucket = next(iter(self._buckets.items()))
            if not bucket.full(now):
                return
            del self._buckets[address]
