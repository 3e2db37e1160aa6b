"""How long the worker waits before reconnecting: a pure policy, tested without a clock.

Exponential with "equal jitter": the n-th consecutive failure waits between half and all of
``min(max_delay, initial * 2**(n-1))``. Half is fixed so that a restarting scheduler is not
hammered; half is random so that a fleet of workers does not reconnect in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

INITIAL_DELAY = 0.1


def reconnect_delay(
    failures: int,
    *,
    max_delay: float,
    initial: float = INITIAL_DELAY,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after ``failures`` consecutive failed connections (1 or more)."""
    if failures < 1:
        return 0.0
    ceiling = min(max_delay, initial * 2.0 ** min(failures - 1, 64))
    return ceiling / 2 + rng() * ceiling / 2


@dataclass
class Backoff:
    """Counts consecutive failures; ``reset()`` once a connection was welcomed."""

    max_delay: float
    rng: Callable[[], float] = field(default=random.random)
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        return reconnect_delay(self.failures, max_delay=self.max_delay, rng=self.rng)

    def reset(self) -> None:
        self.failures = 0
