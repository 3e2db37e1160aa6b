"""Retry and backoff policy: a pure function of the task, the attempt and a random source."""

from __future__ import annotations

import random
from typing import Protocol

from .model import Backoff, Micros


class RandomSource(Protocol):
    def random(self) -> float: ...


def backoff_delay(backoff: Backoff, failures: int, rng: RandomSource | None = None) -> Micros:
    """Delay before the attempt after the ``failures``-th failure (1 = first retry).

    ``min(initial * multiplier**(failures-1), maximum)``, then shortened by up to ``jitter`` of
    itself. Jitter only shortens, so the documented maximum is a real upper bound, and
    workers retrying after a shared outage spread out instead of stampeding.
    """
    if failures < 1:
        return 0
    exponent = min(failures - 1, 64)  # beyond this the maximum has long been reached
    raw = min(backoff.initial * backoff.multiplier**exponent, float(backoff.maximum))
    source = rng if rng is not None else random
    return int(raw * (1.0 - backoff.jitter * source.random()))
