"""The workloads of ``python -m bench``, each timing one :class:`~bench.systems.System`.

- **A1** throughput, single creates: ``tasks`` no-op tasks, one call each (up to 64 in
  flight where the client allows), 2 worker processes: the create rate, and the end-to-end
  rate from the first create to the last start.
- **A2** the same through the bulk API, batches of 1,000.
- **B** latency on an idle system: 500 tasks created one at a time at 50/s; create to
  start, p50 and p99.
- **C** punctuality: 200 tasks due 2-5 s ahead; start minus due, p50 and p99, and how many
  started early.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Figures, percentile
from bench.processes import wait_until
from bench.starts import Start, read_starts
from bench.systems import System


@dataclass(frozen=True)
class Sizes:
    throughput_tasks: int = 20_000
    inflight: int = 64
    batch: int = 1000
    latency_tasks: int = 500
    latency_rate: float = 50.0
    punctuality_tasks: int = 200

    @classmethod
    def quick(cls) -> Sizes:
        return cls(throughput_tasks=2_000, latency_tasks=100, punctuality_tasks=50)


def _count(directory: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in directory.glob("*.txt") if path.is_file())


def _wait_for(system: System, count: int, timeout: float) -> list[Start]:
    def all_started() -> bool:
        system.check_alive()
        return _count(system.starts) >= count

    wait_until(all_started, timeout, f"{system.name}: {count} tasks started")
    return read_starts(system.starts)


def _fresh(system: System) -> None:
    shutil.rmtree(system.starts, ignore_errors=True)
    system.starts.mkdir(parents=True)


def throughput(system: System, sizes: Sizes, bulk: bool) -> Figures:
    _fresh(system)
    n = sizes.throughput_tasks
    if bulk:
        first, last_ack = system.create_bulk(n, sizes.batch)
    else:
        first, last_ack = system.create_single(n, sizes.inflight)
    starts = _wait_for(system, n, timeout=max(120.0, n / 50))
    last_start = max(s.started for s in starts)
    figures = Figures()
    figures["create/s"] = n / (last_ack - first)
    figures["end-to-end/s"] = n / (last_start - first)
    figures["started"] = len(starts)
    return figures


def latency(system: System, sizes: Sizes) -> Figures:
    _fresh(system)
    system.create_paced(sizes.latency_tasks, sizes.latency_rate)
    starts = _wait_for(system, sizes.latency_tasks, timeout=120)
    delays = [(s.started - s.created) * 1000 for s in starts]
    figures = Figures()
    figures["p50 ms"] = percentile(delays, 0.5)
    figures["p99 ms"] = percentile(delays, 0.99)
    return figures


def punctuality(system: System, sizes: Sizes) -> Figures:
    _fresh(system)
    rng = random.Random(7)
    now = time.time()
    dues = sorted(now + rng.uniform(2.0, 5.0) for _ in range(sizes.punctuality_tasks))
    system.create_due(dues)
    starts = _wait_for(system, sizes.punctuality_tasks, timeout=120)
    lateness = [(s.started - s.due) * 1000 for s in starts]
    figures = Figures()
    figures["p50 ms"] = percentile(lateness, 0.5)
    figures["p99 ms"] = percentile(lateness, 0.99)
    figures["early"] = sum(1 for late in lateness if late < 0)
    if time.time() - now > 2.0 and any(s.created > s.due for s in starts):
        figures.notes.append("some creates came after their due time (a slow client)")
    return figures


WORKLOADS: dict[str, Callable[[System, Sizes], Figures]] = {
    "A1": lambda system, sizes: throughput(system, sizes, bulk=False),
    "A2": lambda system, sizes: throughput(system, sizes, bulk=True),
    "B": latency,
    "C": punctuality,
}

TITLES = {
    "A1": "A1 throughput, one call per task",
    "A2": "A2 throughput, bulk",
    "B": "B create→start latency, idle, 50/s",
    "C": "C punctuality, due 2-5 s ahead (start − due)",
}
