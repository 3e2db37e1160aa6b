"""How long finished tasks and deletion records are kept: a pure policy, no I/O.

Finished tasks are removed once they are older than their state's retention, so the
database stops growing under steady load; the record of a deletion (the tombstone a
watcher resuming with ``since_revision`` learns of it from) is kept for a retention of its
own. A retention of 0 keeps forever. Durations are written as seconds (``3600``,
``0.5``) or with one unit suffix (``90s``, ``30m``, ``12h``, ``7d``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .model import MICROS_PER_SECOND, Micros, TaskState

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a plain number of seconds, or a number with s, m, h or d.

    Raises ValueError with the accepted forms, so argparse names the flag and the value.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"expected seconds or a number with s, m, h or d (e.g. 3600, 30m, 7d), got {text!r}"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower() or "s"]
    if not math.isfinite(seconds):
        raise ValueError(f"duration {text!r} is too large")
    return seconds


@dataclass(frozen=True)
class RetentionPolicy:
    """Per finished state, how long a task is kept after it finished; 0 keeps forever."""

    succeeded: Micros = 7 * 86_400 * MICROS_PER_SECOND
    failed: Micros = 30 * 86_400 * MICROS_PER_SECOND
    cancelled: Micros = 7 * 86_400 * MICROS_PER_SECOND
    #: How long the record of a deleted (or pruned) task stays in the change feed.
    tombstones: Micros = 7 * 86_400 * MICROS_PER_SECOND

    @classmethod
    def from_seconds(
        cls, *, succeeded: float, failed: float, cancelled: float, tombstones: float
    ) -> RetentionPolicy:
        return cls(
            succeeded=_micros(succeeded),
            failed=_micros(failed),
            cancelled=_micros(cancelled),
            tombstones=_micros(tombstones),
        )

    @property
    def task_ages(self) -> Mapping[TaskState, Micros]:
        """The finished states that are pruned at all, with the age past which they go."""
        ages = {
            TaskState.SUCCEEDED: self.succeeded,
            TaskState.FAILED: self.failed,
            TaskState.CANCELLED: self.cancelled,
        }
        return {state: age for state, age in ages.items() if age > 0}

    @property
    def prunes_anything(self) -> bool:
        return bool(self.task_ages) or self.tombstones > 0


def _micros(seconds: float) -> Micros:
    return int(seconds * MICROS_PER_SECOND)
