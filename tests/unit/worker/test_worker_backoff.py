"""The reconnect delay policy, with the randomness injected."""

from __future__ import annotations

import pytest

from worker_service.backoff import INITIAL_DELAY, Backoff, Failover, reconnect_delay


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


def failover(*addresses: str, max_delay: float = 10) -> Failover:
    return Failover(addresses, Backoff(max_delay=max_delay, rng=lambda: 1.0))


def test_one_address_backs_off_exactly_like_before() -> None:
    one = failover("a:1")
    plain = Backoff(max_delay=10, rng=lambda: 1.0)
    for _ in range(6):
        assert one.next_delay() == plain.next_delay()
        assert one.address == "a:1"
    one.connected()
    plain.reset()
    assert one.next_delay() == plain.next_delay() == pytest.approx(0.1)


def test_the_next_address_at_once_then_back_off_per_full_cycle() -> None:
    three = failover("a:1", "b:2", "c:3")
    assert three.address == "a:1"
    delays, addresses = [], []
    for _ in range(9):
        delays.append(three.next_delay())
        addresses.append(three.address)
    assert addresses == ["b:2", "c:3", "a:1"] * 3
    # The first backoff step only while untried addresses remain; after each full cycle
    # of failures, the backoff of that many failed cycles.
    assert delays == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1, 0.4])


def test_a_welcome_starts_a_new_cycle_from_the_next_address() -> None:
    two = failover("a:1", "b:2")
    delays = [two.next_delay() for _ in range(4)]
    assert delays == pytest.approx([0.1, 0.1, 0.1, 0.2])  # two failed cycles
    assert two.address == "a:1"
    two.connected()  # a:1 welcomed, then its stream breaks (or it drains)
    assert two.next_delay() == pytest.approx(0.1)
    assert two.address == "b:2"
    assert two.next_delay() == pytest.approx(0.1)  # a full cycle since the welcome: step 1
    assert two.address == "a:1"
    assert two.next_delay() == pytest.approx(0.1)
    assert two.next_delay() == pytest.approx(0.2)


def test_the_switch_pause_respects_a_small_maximum() -> None:
    two = failover("a:1", "b:2", max_delay=0.02)
    assert two.next_delay() == pytest.approx(0.02)


def test_failover_needs_an_address() -> None:
    with pytest.raises(ValueError, match="no scheduler address"):
        failover()
