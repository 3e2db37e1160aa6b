"""What one run of one workload on one system measured, and how it is summed up."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Figures:
    """Named numbers; each workload fills the ones it measures."""

    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def __setitem__(self, name: str, value: float) -> None:
        self.values[name] = value


def median_of(runs: Sequence[Figures]) -> Figures:
    """Each figure's median over the runs that measured it."""
    names = {name for run in runs for name in run.values}
    merged = Figures()
    for name in sorted(names):
        merged[name] = statistics.median(run[name] for run in runs if name in run.values)
    for run in runs:
        merged.notes.extend(note for note in run.notes if note not in merged.notes)
    return merged
