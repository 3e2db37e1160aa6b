"""Where and when the worker reconnects: pure policies, tested without a clock.

Backoff is exponential with "equal jitter": the n-th consecutive failure waits between half
and all of ``min(max_delay, initial * 2**(n-1))``. Half is fixed so that a restarting
scheduler is not hammered; half is random so that a fleet of workers does not reconnect in
lockstep.

Failover (:class:`Failover`): ``--scheduler`` may list several addresses (scheduler
processes sharing one database; any of them serves any worker). The worker connects to the
first. Whenever a connection ends for any reason but ``stop()`` or a refusal (the attempt
failed, no welcome came, the stream broke, or the scheduler sent ``drain``: it is going
away), the next attempt goes to the *next* address, round robin. The pause before it:

* while some address has not been tried since the last welcome, only the first backoff step
  (``reconnect_delay(1)``: 50-100 ms, less if ``max_delay`` is smaller);
* once every address has been tried without a welcome (a full cycle), the usual backoff,
  counting failed *cycles*: 50-100 ms, 100-200 ms, ... up to ``max_delay``.

A welcome resets both counts. With one address every attempt is a full cycle, so the pauses
are exactly those of the single-address worker. A refusal (FAILED_PRECONDITION and the like)
from any of the addresses still ends the worker: it is a version or configuration mismatch,
not an outage.
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


@dataclass
class Failover:
    """The scheduler address to try, and the pause before the next one (see the module)."""

    addresses: tuple[str, ...]
    backoff: Backoff
    index: int = 0
    #: Attempts since the last welcome or the last full-cycle pause.
    tried: int = 0

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ValueError("no scheduler address")

    @property
    def address(self) -> str:
        return self.addresses[self.index]

    def connected(self) -> None:
        """The scheduler at :attr:`address` welcomed the worker."""
        self.tried = 0
        self.backoff.reset()

    def next_delay(self) -> float:
        """The attempt at :attr:`address` has ended: move on to the next address and return
        how long to wait before trying it."""
        self.index = (self.index + 1) % len(self.addresses)
        self.tried += 1
        if self.tried < len(self.addresses):
            return reconnect_delay(1, max_delay=self.backoff.max_delay, rng=self.backoff.rng)
        self.tried = 0
        return self.backoff.next_delay()
