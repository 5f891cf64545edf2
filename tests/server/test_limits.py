"""The token bucket, with the time passed by hand."""

from __future__ import annotations

import pytest

from progress_server.limits import AddressLimits, MessageBudget, TokenBucket, Verdict


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    """burst events at once pass; the next one does not."""
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    assert all(bucket.take(0.0) for _ in range(40))
    assert not bucket.take(0.0)


def test_tokens_come_back_at_the_rate() -> None:
    """After 0.1 s at 20/s, two more events pass, not three."""
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    for _ in range(40):
        bucket.take(0.0)
    assert [bucket.take(0.1) for _ in range(3)] == [True, True, False]


def test_the_bucket_never_holds_more_than_burst() -> None:
    """A long quiet time refills to burst, no more."""
    bucket = TokenBucket(rate=20, burst=5, now=0.0)
    assert sum(bucket.take(1000.0) for _ in range(10)) == 5


def test_a_steady_sender_at_the_rate_is_never_refused() -> None:
    """One event every 1/rate seconds always passes, even with the burst spent."""
    bucket = TokenBucket(rate=20, burst=1, now=0.0)
    assert all(bucket.take(k / 20) for k in range(200))


def test_time_going_backwards_adds_nothing() -> None:
    """A clock that steps back does not mint tokens."""
    bucket = TokenBucket(rate=20, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0), (-1, 5)])
def test_bad_settings_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, now=0.0)


def test_a_budget_allows_then_refuses_then_closes() -> None:
    """burst frames pass, then tolerance more are refused, then the next one is a flood."""
    budget = MessageBudget(rate=20, burst=3, tolerance=2, now=0.0)
    verdicts = [budget.take(0.0) for _ in range(6)]
    assert verdicts == [Verdict.ALLOW] * 3 + [Verdict.REFUSE] * 2 + [Verdict.CLOSE]


def test_a_budget_recovers_at_the_rate() -> None:
    """After a refusal, waiting 1/rate seconds allows one more frame."""
    budget = MessageBudget(rate=10, burst=1, tolerance=5, now=0.0)
    assert budget.take(0.0) is Verdict.ALLOW
    assert budget.take(0.0) is Verdict.REFUSE
    assert budget.take(0.1) is Verdict.ALLOW


def test_addresses_have_buckets_of_their_own() -> None:
    """One address over its limit does not limit another."""
    limits = AddressLimits(rate=1, burst=2)
    assert [limits.take("10.0.0.1", 0.0) for _ in range(3)] == [True, True, False]
    assert limits.take("10.0.0.2", 0.0)


def test_address_buckets_are_bounded() -> None:
    """A flood of new addresses keeps at most max_addresses buckets, dropping the oldest."""
    limits = AddressLimits(rate=1, burst=1, max_addresses=100)
    for number in range(1000):
        limits.take(f"10.0.{number // 256}.{number % 256}", 0.0)
    assert len(limits) == 100


def test_refilled_buckets_are_forgotten() -> None:
    """An address quiet long enough to refill costs no memory any more."""
    limits = AddressLimits(rate=10, burst=2)
    for number in range(5):
        limits.take(f"10.0.0.{number}", 0.0)
    limits.take("10.0.0.99", 10.0)
    limits.take("10.0.0.99", 10.0)
    limits.take("10.0.0.99", 10.0)
    assert len(limits) <= 2
