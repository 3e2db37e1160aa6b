"""The workloads of ``python -m bench``, each timing one :class:`~bench.systems.System`.

- **A1** throughput, single creates: ``tasks`` no-op tasks, one call each (up to 64 in
  flight where the client allows), 2 worker processes: the create rate, and the end-to-end
  rate from the first create to the last start.
- **A2** the same through the bulk API, batches of 1,000.
- **B** latency on an idle system: 500 tasks created one at a time at 50/s; create to
  start, p50 and p99.
- **C** punctuality: 200 tasks due 2-5 s ahead; start minus due, p50 and p99, and how many
  started early.
- **D** scale (task-orchestrator only): :mod:`bench.scale`, 1,000,000 stored tasks.
- **E** fan-out (task-orchestrator only): :mod:`bench.fanout`, 1,000 worker streams.
- **F** scaling out (task-orchestrator only): :mod:`bench.scaleout`, A1's and A2's end-to-end
  rates on SQLite, one PostgreSQL replica and three.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.fanout import fanout
from bench.figures import Figures, percentile
from bench.processes import wait_until
from bench.scale import prepare, scale
from bench.scaleout import scaleout, table
from bench.starts import Start, read_starts
from bench.systems import Orchestrator, System


@dataclass(frozen=True)
class Sizes:
    throughput_tasks: int = 20_000
    inflight: int = 64
    batch: int = 1000
    latency_tasks: int = 500
    latency_rate: float = 50.0
    punctuality_tasks: int = 200
    scale_tasks: int = 1_000_000
    scale_repeat: int = 25
    fanout_streams: int = 1000
    fanout_processes: int = 4
    fanout_rate: int = 1000
    fanout_seconds: float = 20.0
    scaleout_tasks: int = 10_000
    scaleout_clients: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            throughput_tasks=2_000,
            latency_tasks=100,
            punctuality_tasks=50,
            scale_tasks=50_000,
            scale_repeat=5,
            fanout_streams=200,
            fanout_processes=2,
            fanout_rate=500,
            fanout_seconds=5.0,
            scaleout_tasks=2_000,
        )


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


def _orchestrator(system: System) -> Orchestrator:
    if not isinstance(system, Orchestrator):
        raise TypeError(f"{system.name}: this workload is task-orchestrator's only")
    return system


def scale_prepare(system: System, sizes: Sizes) -> None:
    ours = _orchestrator(system)
    prepare(ours.database, sizes.scale_tasks)
    ours.keep_database = True


def scale_run(system: System, sizes: Sizes) -> Figures:
    ours = _orchestrator(system)
    ours.keep_database = False  # the next start is afresh again
    return scale(
        ours.target,
        ours.scheduler.popen.pid,
        ours.database,
        lambda: throughput(ours, sizes, bulk=True),
        repeat=sizes.scale_repeat,
    )


def fanout_run(system: System, sizes: Sizes) -> Figures:
    ours = _orchestrator(system)
    return fanout(
        ours.target,
        ours.scheduler.popen.pid,
        ours.workdir,
        streams=sizes.fanout_streams,
        processes=sizes.fanout_processes,
        rate=sizes.fanout_rate,
        seconds=sizes.fanout_seconds,
    )


def scaleout_run(system: System, sizes: Sizes) -> Figures:
    ours = _orchestrator(system)
    return scaleout(
        ours.workdir,
        tasks=sizes.scaleout_tasks,
        clients=sizes.scaleout_clients,
        inflight=sizes.inflight,
    )


@dataclass(frozen=True)
class Workload:
    title: str
    #: The figure the ratio column compares, and whether higher is better.
    headline: str
    higher_better: bool
    run: Callable[[System, Sizes], Figures]
    #: Before the system starts (a workload that needs a filled database).
    prepare: Callable[[System, Sizes], None] | None = None
    #: Measured on task-orchestrator alone (targets, not peers, to compare with); one run.
    ours_only: bool = False
    #: Ours alone but measured ``--runs`` times all the same (medians): its comparison is
    #: inside it (F: deployments side by side).
    repeated: bool = False
    #: It starts and stops the processes it measures (the system's own are not started).
    own_processes: bool = False
    #: Its own table of the (median) figures, in place of the one-row-per-system table.
    table: Callable[[Figures], str] | None = None


WORKLOADS: dict[str, Workload] = {
    "A1": Workload(
        "A1 throughput, one call per task",
        "end-to-end/s",
        True,
        lambda system, sizes: throughput(system, sizes, bulk=False),
    ),
    "A2": Workload(
        "A2 throughput, bulk",
        "end-to-end/s",
        True,
        lambda system, sizes: throughput(system, sizes, bulk=True),
    ),
    "B": Workload("B create→start latency, idle, 50/s", "p99 ms", False, latency),
    "C": Workload("C punctuality, due 2-5 s ahead (start − due)", "p99 ms", False, punctuality),
    "D": Workload(
        "D scale: a million stored tasks (50,000 with --quick)",
        "List p99 ms",
        False,
        scale_run,
        prepare=scale_prepare,
        ours_only=True,
    ),
    "E": Workload(
        "E fan-out: 1,000 worker streams, 1,000 tasks/s (200 and 500/s with --quick)",
        "p99 ms",
        False,
        fanout_run,
        ours_only=True,
    ),
    "F": Workload(
        "F scaling out: SQLite, 1 and 3 PostgreSQL replicas (10,000 tasks; 2,000 with --quick)",
        "end-to-end/s",
        True,
        scaleout_run,
        ours_only=True,
        repeated=True,
        own_processes=True,
        table=table,
    ),
}
