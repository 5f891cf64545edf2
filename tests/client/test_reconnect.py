"""The backoff policy, with a fixed random draw."""

from __future__ import annotations

import pytest

from progress_client.reconnect import ReconnectPolicy


def test_ceilings_double_from_initial_up_to_the_cap() -> None:
    """0.5, 1, 2, 4, 8, then 10 s forever."""
    policy = ReconnectPolicy(random=lambda: 1.0)
    assert [policy.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    """Each delay is the draw times the ceiling."""
    draws = iter([0.0, 0.5, 0.25])
    policy = ReconnectPolicy(initial=1.0, cap=10.0, random=lambda: next(draws))
    assert [policy.next_delay() for _ in range(3)] == [0.0, 1.0, 1.0]


def test_real_draws_stay_within_the_ceiling() -> None:
    """With the real random source every delay is in [0, ceiling]."""
    policy = ReconnectPolicy(initial=0.5, cap=2.0)
    for _ in range(200):
        ceiling = policy.ceiling()
        assert 0.0 <= policy.next_delay() <= ceiling <= 2.0


def test_reset_starts_again_from_initial() -> None:
    """After a successful connection the next failure waits little again."""
    policy = ReconnectPolicy(random=lambda: 1.0)
    for _ in range(5):
        policy.next_delay()
    policy.reset()
    assert policy.next_delay() == 0.5


@pytest.mark.parametrize(("initial", "cap"), [(0, 1), (-1, 1), (2, 1)])
def test_bad_settings_are_refused(initial: float, cap: float) -> None:
    """initial must be positive and at most cap."""
    with pytest.raises(ValueError):
        ReconnectPolicy(initial=initial, cap=cap)
