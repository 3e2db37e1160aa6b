"""A clock the test moves by hand: wall clock and monotonic clock, separately if asked."""

from __future__ import annotations


class ManualClock:
    def __init__(self, start: int = 1_800_000_000_000_000) -> None:
        self.value = start
        self.mono = 5_000_000_000  # microseconds "since boot"

    def now(self) -> int:
        return self.value

    def monotonic(self) -> int:
        return self.mono

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        self.value += int(seconds * 1_000_000)
        self.mono += int(seconds * 1_000_000)

    def jump_wall(self, seconds: float) -> None:
        """Someone sets the system clock: only the wall clock moves."""
        self.value += int(seconds * 1_000_000)
