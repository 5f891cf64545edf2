"""The failover decisions, without sockets: made-up times, a backoff with a fixed draw."""

from __future__ import annotations

import pytest

from progress_client.failover import Failover, Wait
from progress_client.reconnect import ReconnectPolicy


def backoff(initial: float = 1.0, cap: float = 8.0) -> ReconnectPolicy:
    """A backoff whose every draw is its ceiling: 1, 2, 4, 8, 8... by default."""
    return ReconnectPolicy(initial=initial, cap=cap, random=lambda: 1.0)


def fail(
    failover: Failover, now: float, *, permanent: bool = False, retry_after: float | None = None
) -> Wait | None:
    """One attempt to the current URL fails at ``now``: what comes next."""
    failover.begin()
    failover.failed(permanent=permanent, retry_after=retry_after)
    return failover.next(now)


def lose(failover: Failover, opened: float, now: float, *, worked: bool = True) -> Wait | None:
    """One attempt opens a connection at ``opened`` that ends at ``now``."""
    failover.begin()
    failover.connected(opened)
    failover.lost(now, worked=worked)
    return failover.next(now)


def test_one_url_waits_the_growing_backoff() -> None:
    """Failure after failure, the same URL, each attempt numbered, each wait longer."""
    failover = Failover(1, backoff())
    waits = [fail(failover, now=10.0 * n) for n in range(5)]
    assert waits == [
        Wait(0, 1.0, 1.0, 2),
        Wait(0, 2.0, 12.0, 3),
        Wait(0, 4.0, 24.0, 4),
        Wait(0, 8.0, 38.0, 5),
        Wait(0, 8.0, 48.0, 6),
    ]


def test_a_new_loop_starts_afresh() -> None:
    """A Failover is one loop: the first URL, attempt 1, and the backoff reset."""
    policy = backoff()
    first = Failover(2, policy)
    for _ in range(4):
        fail(first, 0.0)
    assert policy.attempts > 0
    again = Failover(2, policy)
    assert (again.index, again.attempt, policy.attempts) == (0, 0, 0)
    assert again.begin() == 1


def test_a_dead_url_costs_one_attempt_then_every_url_failed_waits_the_backoff() -> None:
    """The next URL is tried at once while it has not failed; once every URL failed in
    a row, the backoff applies, and the rotation goes on."""
    failover = Failover(3, backoff())
    waits = [fail(failover, 0.0) for _ in range(6)]
    assert [(w.index, w.delay) for w in waits if w] == [
        (1, 0.0),
        (2, 0.0),
        (0, 1.0),
        (1, 2.0),
        (2, 4.0),
        (0, 8.0),
    ]
    assert [w.attempt for w in waits if w] == [2, 3, 4, 5, 6, 7]


def test_a_lasting_connection_resets_the_backoff_and_every_url() -> None:
    """Lost after stable_after seconds: attempt 1 next, the next URL at once (it is
    worth trying again), and the backoff from its start when every URL failed again."""
    failover = Failover(2, backoff(), stable_after=5.0)
    for _ in range(4):
        fail(failover, 0.0)
    assert failover.policy.attempts == 3
    assert lose(failover, opened=100.0, now=105.0) == Wait(1, 0.0, 105.0, 1)
    assert failover.policy.attempts == 0
    assert fail(failover, 106.0) == Wait(0, 1.0, 107.0, 2)


def test_a_lasting_connection_on_one_url_retries_it_after_the_first_backoff() -> None:
    """One URL: the loss is a failure of the only URL, so the backoff applies, afresh."""
    failover = Failover(1, backoff(), stable_after=5.0)
    for _ in range(3):
        fail(failover, 0.0)
    assert lose(failover, opened=10.0, now=20.0) == Wait(0, 1.0, 21.0, 1)


def test_a_short_connection_counts_attempts_afresh_but_keeps_the_backoff() -> None:
    """Servers that greet and hang up at once, in turn: the first loss moves on at
    once, then each wait is longer; the attempts count from 1 each time."""
    failover = Failover(2, backoff(initial=0.01, cap=1.0), stable_after=5.0)
    waits = [lose(failover, opened=float(n), now=n + 0.1) for n in range(4)]
    assert [(w.index, w.delay, w.attempt) for w in waits if w] == [
        (1, 0.0, 1),
        (0, 0.01, 1),
        (1, 0.02, 1),
        (0, 0.04, 1),
    ]


def test_a_connection_given_up_is_a_failure() -> None:
    """worked=False (invalid messages, a flood, abandon()): the attempts go on counting
    and the backoff grows, however long the connection lasted."""
    failover = Failover(1, backoff(), stable_after=5.0)
    waits = [lose(failover, opened=10.0 * n, now=10.0 * n + 9, worked=False) for n in range(3)]
    assert [(w.delay, w.attempt) for w in waits if w] == [(1.0, 2), (2.0, 3), (4.0, 4)]


def test_retry_after_is_the_least_wait_of_its_url() -> None:
    """One URL: the wait is the backoff or the Retry-After, whichever is longer, and
    says what the server asked."""
    failover = Failover(1, backoff())
    assert fail(failover, 0.0, retry_after=3.0) == Wait(0, 3.0, 3.0, 2, asked=3.0)
    assert fail(failover, 10.0, retry_after=1.0) == Wait(0, 2.0, 12.0, 3, asked=1.0)
    assert fail(failover, 20.0) == Wait(0, 4.0, 24.0, 4)


def test_retry_after_holds_back_its_url_only() -> None:
    """A URL asks for 60 s: the next one is tried at once; back to the first, what is
    left of the 60 s is waited, even when the backoff is shorter."""
    failover = Failover(2, backoff())
    assert fail(failover, 0.0, retry_after=60.0) == Wait(1, 0.0, 0.0, 2)
    assert fail(failover, 10.0) == Wait(0, 50.0, 60.0, 3, asked=50.0)
    # Once its time has passed, a URL's Retry-After asks for nothing more.
    assert fail(failover, 100.0) == Wait(1, 2.0, 102.0, 4)
    assert fail(failover, 200.0) == Wait(0, 4.0, 204.0, 5)


def test_a_connection_forgets_its_urls_retry_after() -> None:
    """A URL that asked for 60 s and connected before (the user asked): once that
    connection ends, its earlier Retry-After holds it back no more."""
    failover = Failover(2, backoff())
    assert fail(failover, 0.0, retry_after=60.0) == Wait(1, 0.0, 0.0, 2)
    assert fail(failover, 1.0) == Wait(0, 59.0, 60.0, 3, asked=59.0)
    failover.reconnect_now()  # during the wait: it ends at once
    failover.waited()
    assert lose(failover, opened=2.0, now=3.0) == Wait(1, 2.0, 5.0, 1)
    assert fail(failover, 5.0) == Wait(0, 4.0, 9.0, 2)


def test_reconnect_now_skips_one_wait_only() -> None:
    """The user asked: no wait, not even a Retry-After, and no draw from the backoff;
    once that wait is served, the next failure waits again."""
    failover = Failover(1, backoff())
    fail(failover, 0.0)
    failover.reconnect_now()
    assert fail(failover, 1.0, retry_after=30.0) == Wait(0, 0.0, 1.0, 3, asked=30.0)
    assert failover.policy.attempts == 1
    failover.waited()
    assert fail(failover, 2.0) == Wait(0, 2.0, 4.0, 4)


def test_reconnect_now_during_a_wait_is_served_by_it() -> None:
    """Asked while waiting: the wait ends early (the client wakes), and the failure
    after it waits out the backoff as usual."""
    failover = Failover(1, backoff())
    fail(failover, 0.0)
    failover.reconnect_now()
    failover.waited()
    assert fail(failover, 1.0) == Wait(0, 2.0, 3.0, 3)


def test_a_url_refused_for_good_is_left_out() -> None:
    """It is never tried again in this loop: the others are, and with one left, each
    loss waits the backoff on that one."""
    failover = Failover(3, backoff())
    assert fail(failover, 0.0, permanent=True) == Wait(1, 0.0, 0.0, 2)
    assert lose(failover, opened=0.0, now=10.0) == Wait(2, 0.0, 10.0, 1)
    assert fail(failover, 11.0, permanent=True) == Wait(1, 1.0, 12.0, 2)
    assert not failover.refused_everywhere
    waits = [lose(failover, opened=20.0 + n, now=20.5 + n) for n in range(3)]
    assert [(w.index, w.delay) for w in waits if w] == [(1, 2.0), (1, 4.0), (1, 8.0)]


def test_every_url_refused_for_good_stops() -> None:
    """The last URL refused: no next attempt, and trying again cannot help."""
    failover = Failover(2, backoff())
    assert fail(failover, 0.0, permanent=True) == Wait(1, 0.0, 0.0, 2)
    assert not failover.refused_everywhere
    assert fail(failover, 0.0, permanent=True) is None
    assert failover.refused_everywhere
    assert failover.index == 1  # the last one tried


def test_without_reconnect_each_url_is_tried_once() -> None:
    """reconnect=False: on to the next URL at once, then stop when the next one failed
    already; the index stays at the last URL tried."""
    failover = Failover(2, backoff(), reconnect=False)
    assert fail(failover, 0.0) == Wait(1, 0.0, 0.0, 2)
    assert fail(failover, 0.0) is None
    assert failover.index == 1
    single = Failover(1, backoff(), reconnect=False)
    assert lose(single, opened=0.0, now=60.0) is None
    assert not single.refused_everywhere


def test_without_reconnect_a_url_that_worked_then_lost_still_lets_the_next_be_tried() -> None:
    """A dead first URL, the second worked and was lost: the first failed already, so
    the loop stops rather than trying it again."""
    failover = Failover(2, backoff(), reconnect=False)
    assert fail(failover, 0.0) == Wait(1, 0.0, 0.0, 2)
    assert lose(failover, opened=1.0, now=2.0) is None


def test_no_url_is_refused() -> None:
    with pytest.raises(ValueError, match="no URL"):
        Failover(0, backoff())
