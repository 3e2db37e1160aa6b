"""How the SQLite store's hot queries hold up with many stored tasks.

Fills a fresh database with ``--tasks`` tasks through the store's own batched create path,
spreads them over states with one bulk UPDATE (setup only), then times the queries the
scheduler runs: List with each filter (p50/p99 over ``--repeat`` calls, at random depths via
the cursor), claims, the next-due timer, GetTask, the change feed, and GetStats; and
reports the database size and this process's peak RSS.

    python bench/store_scale.py --tasks 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from scheduler_service.domain.model import (
    Backoff,
    ClaimRequest,
    TaskFilter,
    TaskSpec,
    TaskState,
)
from scheduler_service.store.sqlite.store import SqliteOptions, SqliteTaskStore

TYPES = ["foo", "bar", "baz", "sum2", "send_email"]


def spec(i: int, now_us: int) -> TaskSpec:
    return TaskSpec(
        type=TYPES[i % len(TYPES)],
        payload_json=f'{{"n":{i}}}',
        run_at=now_us + (3_600_000_000 if i % 10 == 0 else 0),  # 10% scheduled an hour ahead
        priority=i % 7,
        max_attempts=3,
        backoff=Backoff(),
        timeout=600_000_000,
        group=f"g{i % 1000}" if i % 4 == 0 else "",
        idempotency_key="",
        cache=False,
        labels={"tenant": f"t{i % 50}"} if i % 3 == 0 else {},
        client=f"client{i % 20}",
    )


async def timed(label: str, call: Callable[[], Awaitable[object]], repeat: int) -> None:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"{label:<44} p50 {statistics.median(samples):8.2f} ms   p99 {p99:8.2f} ms")


async def fill(store: SqliteTaskStore, tasks: int, now: int) -> float:
    """Create ``tasks`` tasks through the store's batched create path, then spread them over
    states the way a long-lived system has them; answers the create rate (tasks/s)."""
    await store.register_task_types(TYPES)
    started = time.perf_counter()
    batch = 1000
    for start in range(0, tasks, batch):
        await store.create_tasks([spec(i, now) for i in range(start, min(tasks, start + batch))])
    rate = tasks / (time.perf_counter() - started)

    # Setup only: most tasks finished, some failed or cancelled (like a long-lived system).
    conn = store._writer_conn
    assert conn is not None
    await conn.execute("BEGIN IMMEDIATE")
    await conn.execute(
        "UPDATE tasks SET state = CASE WHEN rowid % 10 < 7 THEN 4 WHEN rowid % 10 = 7 THEN 5 "
        "ELSE 6 END, finished_at = created_at WHERE rowid % 10 BETWEEN 1 AND 8 AND run_at <= ?",
        (now,),
    )
    # The bulk UPDATE went around the store: recount, as the migration that made the table does.
    await conn.execute("DELETE FROM task_counts")
    await conn.execute(
        "INSERT INTO task_counts (type, state, tasks, retries, exhausted) "
        "SELECT type, state, count(*), sum(max(attempts - 1, 0)), "
        "sum(state = 5 AND attempts >= max_attempts) FROM tasks GROUP BY type, state"
    )
    await conn.execute("COMMIT")
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--database", default="")
    args = parser.parse_args()

    path = args.database or os.path.join(tempfile.mkdtemp(), "scale.db")
    store = SqliteTaskStore(path, SqliteOptions())
    await store.open()
    now = time.time_ns() // 1000
    rate = await fill(store, args.tasks, now)
    print(f"created {args.tasks:,} tasks ({rate:,.0f}/s, batches of 1,000)")

    ids = [
        t.id
        for t in (await store.list_tasks(TaskFilter(), limit=1000, after_id=None, descending=True))[
            0
        ]
    ]
    deep = [
        t.id
        for t in (
            await store.list_tasks(TaskFilter(), limit=1000, after_id=None, descending=False)
        )[0]
    ]
    cursors = ids + deep

    def page(flt: TaskFilter) -> Callable[[], Awaitable[object]]:
        return lambda: store.list_tasks(
            flt, limit=51, after_id=random.choice(cursors), descending=True
        )

    r = args.repeat
    await timed("List, no filter", page(TaskFilter()), r)
    await timed("List, state=FAILED", page(TaskFilter(states=frozenset({TaskState.FAILED}))), r)
    await timed(
        "List, states=FAILED,CANCELLED",
        page(TaskFilter(states=frozenset({TaskState.FAILED, TaskState.CANCELLED}))),
        r,
    )
    await timed("List, state=PENDING", page(TaskFilter(states=frozenset({TaskState.PENDING}))), r)
    await timed(
        "List, state=SCHEDULED", page(TaskFilter(states=frozenset({TaskState.SCHEDULED}))), r
    )
    await timed("List, type=sum2", page(TaskFilter(types=frozenset({"sum2"}))), r)
    await timed("List, types=sum2,foo", page(TaskFilter(types=frozenset({"sum2", "foo"}))), r)
    await timed("List, client=client7", page(TaskFilter(client="client7")), r)
    await timed("List, group=g40", page(TaskFilter(group="g40")), r)
    await timed("List, label tenant=t9", page(TaskFilter(labels={"tenant": "t9"})), r)
    await timed(
        "List, type=foo + state=FAILED",
        page(TaskFilter(types=frozenset({"foo"}), states=frozenset({TaskState.FAILED}))),
        r,
    )
    await timed("GetTask", lambda: store.get_task(random.choice(cursors)), r)
    await timed("next_due_at (dispatcher timer)", store.next_due_at, r)
    revision = await store.revision()
    await timed("changes_since (recent)", lambda: store.changes_since((revision - 1, "~"), 500), r)

    claimed = 0

    async def claim() -> None:
        nonlocal claimed
        outcome = await store.claim([ClaimRequest("s", "w", frozenset(TYPES), 100, 30_000_000)])
        [leases] = outcome.leases
        claimed += len(leases)

    started = time.perf_counter()
    for _ in range(20):
        await claim()
    took = time.perf_counter() - started
    label = "claim 100 tasks of 5 types (x20)"
    print(f"{label:<44} {took / 20 * 1000:8.2f} ms each, {claimed / took:,.0f} leases/s")
    await timed("GetStats (counts by state and type)", store.stats, 5)

    await store.close()
    size = sum(p.stat().st_size for p in Path(path).parent.glob(Path(path).name + "*"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"database {size / 1e6:,.0f} MB on disk; bench process peak RSS {rss:,.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
