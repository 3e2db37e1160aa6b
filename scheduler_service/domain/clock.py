"""The scheduler's clock, injected so that rules and tests control time."""

from __future__ import annotations

import time
from typing import Protocol

from .model import Micros


class Clock(Protocol):
    def now(self) -> Micros: ...


class SystemClock:
    """Wall-clock time in microseconds since the epoch."""

    def now(self) -> Micros:
        return time.time_ns() // 1000
