"""Workload D, scale: a scheduler over ``tasks`` stored tasks (1,000,000 by default).

Before the scheduler starts, :func:`prepare` fills its database through the store's own
batched create path and spreads the tasks over states as a long-lived system has them
(:func:`bench.store_scale.fill`: 70 % succeeded, 10 % failed, 10 % cancelled, the rest
queued, 10 % of them an hour ahead). Then, through the real scheduler:

- **List**: the first page and a page deep behind a cursor, for each of the filters users
  reach for (none, a state, a type, a type and state, a client, a group, a label); p50 and
  p99 over every call.
- **Claims**: ``claim_tasks`` no-op tasks created in bulk and run by the 2 workers beside
  the million rows; the end-to-end rate, to set beside A2's on an empty database.
- The scheduler's peak RSS (it never holds the tasks in memory) and the database's size.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

from bench.fanout import peak_rss_mib
from bench.figures import Figures, percentile

FILTERS: list[dict[str, object]] = [
    {},
    {"states": ["failed"]},
    {"states": ["pending"]},
    {"types": ["sum2"]},
    {"types": ["foo"], "states": ["failed"]},
    {"client": "client7"},
    {"group": "g40"},
    {"labels": {"tenant": "t9"}},
]


def prepare(database: Path, tasks: int) -> None:
    """Fill ``database`` (removed first) with ``tasks`` tasks in mixed states."""
    from bench.store_scale import fill
    from scheduler_service.store.sqlite.store import SqliteOptions, SqliteTaskStore

    for path in database.parent.glob(database.name + "*"):
        path.unlink()

    async def run() -> None:
        store = SqliteTaskStore(str(database), SqliteOptions())
        await store.open()
        try:
            await fill(store, tasks, time.time_ns() // 1000)
        finally:
            await store.close()

    asyncio.run(run())


async def _list_latencies(target: str, repeat: int) -> list[float]:
    from orchestrator_client import AsyncClient

    samples: list[float] = []
    rng = random.Random(3)
    async with AsyncClient(target) as client:
        for _ in range(repeat):
            for flt in rng.sample(FILTERS, len(FILTERS)):
                started = time.perf_counter()
                first = await client.list_tasks(page_size=50, **flt)  # type: ignore[arg-type]
                samples.append((time.perf_counter() - started) * 1000)
                if first.next_page_token:
                    started = time.perf_counter()
                    await client.list_tasks(
                        page_size=50,
                        page_token=first.next_page_token,
                        **flt,  # type: ignore[arg-type]
                    )
                    samples.append((time.perf_counter() - started) * 1000)
    return samples


def scale(
    target: str,
    scheduler_pid: int,
    database: Path,
    run_bulk: Callable[[], Figures],
    *,
    repeat: int,
) -> Figures:
    """List latencies, then the claim rate (``run_bulk()`` answers A2's figures)."""
    figures = Figures()
    samples = asyncio.run(_list_latencies(target, repeat))
    figures["List p50 ms"] = percentile(samples, 0.5)
    figures["List p99 ms"] = percentile(samples, 0.99)
    bulk = run_bulk()
    figures["claims end-to-end/s"] = bulk["end-to-end/s"]
    figures["scheduler RSS MiB"] = peak_rss_mib(scheduler_pid)
    size = sum(p.stat().st_size for p in database.parent.glob(database.name + "*"))
    figures["database MB"] = size / 1e6
    return figures
