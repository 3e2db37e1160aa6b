"""The scheduler's clock, injected so that rules and tests control time."""

from __future__ import annotations

import time
from typing import Protocol

from .model import Micros


class Clock(Protocol):
    def now(self) -> Micros:
        """Wall-clock time: when things are due, created, finished (what people read)."""

    def monotonic(self) -> Micros:
        """A clock that never jumps: lease expiry and attempt deadlines.

        On Linux ``CLOCK_MONOTONIC`` is one clock for the whole host (time since boot), so
        scheduler processes sharing a database file agree on it; the store notices a reboot
        (a new boot id) and expires the leases of the previous boot.
        """


class SystemClock:
    def now(self) -> Micros:
        return time.time_ns() // 1000

    def monotonic(self) -> Micros:
        return time.monotonic_ns() // 1000
