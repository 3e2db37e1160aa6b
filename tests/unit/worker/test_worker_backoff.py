"""The reconnect delay policy, with the randomness injected."""

from __future__ import annotations

import pytest

from worker_service.backoff import INITIAL_DELAY, Backoff, reconnect_delay


def test_no_failure_no_wait() -> None:
    assert reconnect_delay(0, max_delay=10) == 0.0


def test_doubles_between_half_and_all_of_the_ceiling() -> None:
    lows = [reconnect_delay(n, max_delay=100, rng=lambda: 0.0) for n in range(1, 6)]
    highs = [reconnect_delay(n, max_delay=100, rng=lambda: 1.0) for n in range(1, 6)]
    ceilings = [INITIAL_DELAY * 2**i for i in range(5)]
    assert lows == pytest.approx([c / 2 for c in ceilings])
    assert highs == pytest.approx(ceilings)


def test_capped_at_the_maximum() -> None:
    assert reconnect_delay(50, max_delay=10, rng=lambda: 1.0) == 10
    assert reconnect_delay(50, max_delay=10, rng=lambda: 0.0) == 5
    assert reconnect_delay(10_000, max_delay=3, rng=lambda: 0.5) == pytest.approx(2.25)


def test_backoff_counts_and_resets() -> None:
    backoff = Backoff(max_delay=10, rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(3)] == pytest.approx([0.1, 0.2, 0.4])
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)
