"""How hard the fault suite pushes: the short profile runs in CI, the long one from
``python bench/faults.py`` (``FAULT_PROFILE=long``)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    kill_tasks: int  # tasks in the scheduler-SIGKILL run
    kill_seeds: tuple[int, ...]
    load_streams: int
    load_tasks_per_second: int
    load_seconds: float
    power_cuts: int


SHORT = Profile("short", 5_000, (1,), 200, 300, 5.0, 8)
LONG = Profile("long", 20_000, tuple(range(1, 11)), 1_000, 1_000, 30.0, 50)


def current() -> Profile:
    return LONG if os.environ.get("FAULT_PROFILE") == "long" else SHORT
