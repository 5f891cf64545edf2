"""Which URL the client tries next, and after what wait. Pure: no I/O, no sleeping.

:class:`~progress_client.client.ProgressClient` tells a :class:`Failover` what happened
(an attempt failed, a connection opened, a connection ended), with the time of its
event loop's clock, and asks it what to do next; tests do the same with made-up times.

The rules, for one or several URLs (instances that share one calculation):

- each attempt after a failure or a loss goes to the next URL in turn;
- it goes at once while that URL has not failed since the last lasting connection (a
  dead instance costs one attempt, not a backoff), and after the backoff once every
  URL failed in a row (the servers are not hammered);
- a URL's ``Retry-After`` holds back the next attempt to that URL, and to it only;
- a URL refused for good is left out until the loop starts again; when every URL is,
  the loop stops;
- :meth:`Failover.reconnect_now` (the user asked) skips the next wait, even a
  ``Retry-After``;
- without reconnecting, the loop stops once every URL failed or was lost once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .reconnect import ReconnectPolicy

__all__ = ["Failover", "Wait"]


@dataclass(frozen=True, slots=True)
class Wait:
    """The next attempt, and the wait before it.

    Attributes:
        index: The URL to try, by its index.
        delay: Seconds to wait first.
        retry_at: When the attempt goes, on the clock of the ``now`` given.
        attempt: The attempt's number: 1 after a connection that worked.
        asked: The wait that URL's ``Retry-After`` still asks for, in seconds; 0.0
            when it asks for none.
    """

    index: int
    delay: float
    retry_at: float
    attempt: int
    asked: float = 0.0


class Failover:
    """The decisions of one reconnect loop over ``count`` URLs, from its start: the
    first URL, attempt 1 next, every URL, a fresh backoff.

    Args:
        count: How many URLs there are, tried from index 0.
        policy: The backoff once every URL failed in a row; reset by a connection that
            lasted ``stable_after`` seconds.
        reconnect: False to stop once every URL failed or was lost once.
        stable_after: How long a connection must last for its end to start the backoff
            afresh and make every URL worth trying at once again.

    Attributes:
        index: The URL of the current attempt or connection (the next one while
            waiting, the last one once stopped).
        attempt: The number of the current attempt; 0 after a connection that worked.
    """

    def __init__(
        self,
        count: int,
        policy: ReconnectPolicy,
        *,
        reconnect: bool = True,
        stable_after: float = 5.0,
    ) -> None:
        if count < 1:
            raise ValueError("no URL to fail over between")
        self.count = count
        self.policy = policy
        self.reconnect = reconnect
        self.stable_after = stable_after
        self.policy.reset()
        self.index = 0
        self.attempt = 0
        #: The URLs that failed since the last lasting connection.
        self._failed: set[int] = set()
        #: The URLs refused for good, left out of this loop.
        self._left_out: set[int] = set()
        #: The time before which a URL asked (Retry-After) not to be tried.
        self._not_before: dict[int, float] = {}
        #: What the last failure's Retry-After asked for, in seconds.
        self._asked: float | None = None
        self._opened: float | None = None
        self._skip_wait = False

    @property
    def refused_everywhere(self) -> bool:
        """Every URL refused for good: trying again cannot help until the loop starts
        again."""
        return len(self._left_out) == self.count

    def begin(self) -> int:
        """An attempt to :attr:`index` begins; returns its number."""
        self.attempt += 1
        return self.attempt

    def failed(self, *, permanent: bool = False, retry_after: float | None = None) -> None:
        """The attempt failed.

        Args:
            permanent: The URL refused for good: it is left out of this loop.
            retry_after: The wait its ``Retry-After`` asked for, in seconds.
        """
        self._failed.add(self.index)
        if permanent:
            self._left_out.add(self.index)
        self._asked = retry_after

    def connected(self, now: float) -> None:
        """The attempt opened a connection, at ``now``."""
        self._opened = now

    def lost(self, now: float, *, worked: bool) -> None:
        """The connection ended at ``now``.

        Args:
            worked: The server said hello and the client did not give the connection
                up. Such a connection starts the count of attempts again, but only one
                that lasted resets the backoff and makes every URL worth trying at
                once: one that said hello and then had to be given up, or servers that
                greet and hang up over and over, are not hammered in a tight loop.
        """
        if worked:
            self.attempt = 0
            opened = now if self._opened is None else self._opened
            if now - opened >= self.stable_after:
                self.policy.reset()
                self._failed.clear()
        self._failed.add(self.index)
        self._asked = None
        self._opened = None

    def reconnect_now(self) -> None:
        """The user asked to try again now: the next wait is skipped, be it the backoff
        or a ``Retry-After``."""
        self._skip_wait = True

    def waited(self) -> None:
        """The wait is over (or was cut short by :meth:`reconnect_now`, which it
        served): the next failure waits out its backoff again."""
        self._skip_wait = False

    def next(self, now: float) -> Wait | None:
        """After a failure or a loss at ``now``: the next attempt, or None to stop
        (reconnecting is off and every URL failed or was lost once, or
        :attr:`refused_everywhere`)."""
        if self.refused_everywhere:
            return None
        index, asked = self.index, self._asked
        self._not_before.pop(index, None)
        if asked:
            self._not_before[index] = now + asked
        following = self._following(index)
        if not self.reconnect and following in self._failed:
            return None
        self.index = following
        if following != index:  # what that URL asked for earlier, if anything
            asked = max(self._not_before.get(following, now) - now, 0.0)
        if self._skip_wait:
            delay = 0.0
        elif following in self._failed:  # every URL failed in a row
            delay = max(self.policy.next_delay(), asked or 0.0)
        else:
            delay = asked or 0.0
        self._skip_wait = False
        return Wait(following, delay, now + delay, self.attempt + 1, asked or 0.0)

    def _following(self, index: int) -> int:
        """The URL after ``index`` in turn, skipping those left out (``index`` itself if
        it is the only one left)."""
        for step in range(1, self.count + 1):
            candidate = (index + step) % self.count
            if candidate not in self._left_out:
                return candidate
        return index
