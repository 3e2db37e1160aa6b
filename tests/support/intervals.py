"""Sweeps over run intervals and start times: how many ran at once, how many started in a window.

Times are plain numbers in one unit (seconds from the recording handler, microseconds from
the scheduler's attempt history); at the same instant an end is counted before a start, so
back-to-back runs (one ends as the next starts) do not count as overlapping.
"""

from __future__ import annotations

from collections.abc import Iterable


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals ``(start, end)`` open at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    level = peak = 0
    for _, step in events:  # (t, -1) sorts before (t, 1)
        level += step
        peak = max(peak, level)
    return peak


def max_in_window(times: Iterable[float], window: float) -> int:
    """The most ``times`` inside any half-open window ``(t - window, t]``."""
    ordered = sorted(times)
    best, left = 0, 0
    for right, t in enumerate(ordered):
        while t - ordered[left] >= window:
            left += 1
        best = max(best, right - left + 1)
    return best


def overlaps(a: Iterable[tuple[float, float]], b: Iterable[tuple[float, float]]) -> bool:
    """Whether some interval of ``a`` and some interval of ``b`` were open at the same time."""
    b = list(b)
    return any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)
