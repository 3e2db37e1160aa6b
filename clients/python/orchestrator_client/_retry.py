"""When and how long the client waits before repeating a failed call.

Only ``UNAVAILABLE`` is retried: it is the one status that says the request probably never
reached a scheduler (connection refused, reset, a scheduler restarting), so sending it again
is the right answer. Every other status is the scheduler's considered reply and would come
back the same.

The policy is a pure value: :meth:`RetryPolicy.delay` is a function of the retry number and a
random draw, and :func:`call_with_retry` takes its ``sleep`` and ``rng`` as arguments, so the
tests drive it without a clock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ._errors import RPCError, Unavailable

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for calls that failed with ``UNAVAILABLE``.

    The n-th retry (n from 0) waits ``min(initial * multiplier**n, maximum)``, shortened by
    up to ``jitter`` of itself at random so that many clients cut off together do not come
    back in step.
    """

    #: Retries after the first attempt; 0 disables retrying.
    retries: int = 3
    initial: float = 0.1
    multiplier: float = 2.0
    maximum: float = 5.0
    #: Fraction in [0, 1].
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.initial < 0 or self.maximum < 0:
            raise ValueError("initial and maximum must be >= 0")
        if self.multiplier < 1.0:
            raise ValueError(f"multiplier must be >= 1.0, got {self.multiplier}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def should_retry(self, error: RPCError, retry_number: int) -> bool:
        """Whether to try again after ``retry_number`` retries already made."""
        return isinstance(error, Unavailable) and retry_number < self.retries

    def delay(self, retry_number: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry ``retry_number`` (0 for the first retry)."""
        base = min(self.initial * self.multiplier**retry_number, self.maximum)
        return base * (1.0 - self.jitter * rng())


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """``await call()``, again after a pause each time it raises a retryable error.

    ``call`` must raise the library's typed errors (see ``_errors.error_from_rpc``); the last
    error is raised once the policy gives up.
    """
    retry_number = 0
    while True:
        try:
            return await call()
        except RPCError as error:
            if not policy.should_retry(error, retry_number):
                raise
            await sleep(policy.delay(retry_number, rng))
            retry_number += 1
