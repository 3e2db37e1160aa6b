"""A clock the test moves by hand."""

from __future__ import annotations


class ManualClock:
    def __init__(self, start: int = 1_800_000_000_000_000) -> None:
        self.value = start

    def now(self) -> int:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += int(seconds * 1_000_000)
