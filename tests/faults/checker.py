"""The checker every fault test ends with.

It reads the database (read-only, after or during a run) and the workers' own record of
what they ran (``tests/support/recording_handlers``), and fails on any breach of the
promise: **at-least-once execution, exactly one accepted completion per task**.

- an acknowledged create is missing;
- a task has more than one accepted terminal transition (two SUCCEEDED attempts, or an
  attempt after its SUCCEEDED one);
- a completion was accepted from a stale lease (a SUCCEEDED attempt whose lease no worker
  ran to success, or a lease id used twice);
- a terminal task was reopened other than by RetryTask (an attempt after the one that
  finished it);
- a RUNNING row whose lease expired more than two lease periods ago;
- two live leases on one task (two unfinished attempts, or an unfinished attempt that is not
  the task's current lease);
- ``PRAGMA integrity_check`` is not ok; the kept task counts differ from a recount.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.recording_handlers import read_records

SUCCEEDED, FAILED, CANCELLED, RUNNING = 4, 5, 6, 3
OUTCOME_SUCCEEDED = 1


@dataclass
class Report:
    tasks: int = 0
    attempts: int = 0
    by_state: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(problem)


def check(
    database: Path | str,
    *,
    acknowledged: Iterable[str] = (),
    records: Path | None = None,
    retried: Iterable[str] = (),
    deleted: Iterable[str] = (),
    lease_ttl: float = 30.0,
    require_terminal: bool = False,
) -> Report:
    """Check the invariants; raise AssertionError listing every breach found."""
    report = _inspect(
        database, set(acknowledged), records, set(retried), set(deleted), lease_ttl,
        require_terminal,
    )  # fmt: skip
    assert not report.problems, "checker failed:\n  " + "\n  ".join(report.problems)
    return report


@dataclass
class Snapshot:
    """What the checker reads of a store, whichever the backend."""

    #: id -> (id, state, lease_id, lease_expires_at, attempts, max_attempts)
    tasks: dict[str, tuple[Any, ...]]
    #: task id -> [(task_id, number, lease_id, outcome, finished_at, leased_at, started_at)]
    attempts: dict[str, list[tuple[Any, ...]]]
    counts_kept: dict[tuple[str, int], int]
    counts_real: dict[tuple[str, int], int]
    #: The clock lease_expires_at is on, now (micros).
    now: int
    integrity: str = "ok"


TASKS_SQL = "SELECT id, state, lease_id, lease_expires_at, attempts, max_attempts FROM tasks"
ATTEMPTS_SQL = (
    "SELECT task_id, number, lease_id, outcome, finished_at, leased_at, started_at "
    "FROM attempts ORDER BY task_id, number"
)
COUNTS_KEPT_SQL = "SELECT type, state, tasks FROM task_counts WHERE tasks != 0"
COUNTS_REAL_SQL = "SELECT type, state, count(*) FROM tasks GROUP BY 1, 2"


def snapshot_of(
    tasks: Iterable[tuple[Any, ...]],
    attempts: Iterable[tuple[Any, ...]],
    counts_kept: Iterable[tuple[Any, ...]],
    counts_real: Iterable[tuple[Any, ...]],
    now: int,
    integrity: str = "ok",
) -> Snapshot:
    by_task: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in attempts:
        by_task[row[0]].append(tuple(row))
    return Snapshot(
        tasks={row[0]: tuple(row) for row in tasks},
        attempts=by_task,
        counts_kept={(r[0], r[1]): int(r[2]) for r in counts_kept},
        counts_real={(r[0], r[1]): int(r[2]) for r in counts_real},
        now=now,
        integrity=integrity,
    )


def _read_sqlite(database: Path) -> Snapshot:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
        return snapshot_of(
            conn.execute(TASKS_SQL),
            conn.execute(ATTEMPTS_SQL),
            conn.execute(COUNTS_KEPT_SQL),
            conn.execute(COUNTS_REAL_SQL),
            # SQLite keeps lease deadlines on the host's monotonic clock.
            now=time.monotonic_ns() // 1000,
            integrity=integrity,
        )
    finally:
        conn.close()


def read_rows(location: Path | str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one query (the same SQL on both backends), from an SQLite file or a
    PostgreSQL URL."""
    if isinstance(location, str):
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _fetch_postgres(location, sql)).result()
    conn = sqlite3.connect(f"file:{location}?mode=ro", uri=True, timeout=30)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


async def _fetch_postgres(url: str, sql: str) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


def read_postgres(url: str) -> Snapshot:
    """The same snapshot from a PostgreSQL database (its own event loop in a thread: the
    checker is called from tests that are inside theirs)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _read_postgres(url)).result()


async def _read_postgres(url: str) -> Snapshot:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            now = await conn.fetchval("SELECT (extract(epoch FROM now()) * 1000000)::bigint")
            return snapshot_of(
                await conn.fetch(TASKS_SQL),
                await conn.fetch(ATTEMPTS_SQL),
                await conn.fetch(COUNTS_KEPT_SQL),
                await conn.fetch(COUNTS_REAL_SQL),
                # PostgreSQL keeps lease deadlines on the database server's wall clock.
                now=int(now),
            )
    finally:
        await conn.close()


def judge(
    snapshot: Snapshot,
    *,
    acknowledged: Iterable[str] = (),
    records: Path | None = None,
    retried: Iterable[str] = (),
    deleted: Iterable[str] = (),
    lease_ttl: float = 30.0,
    require_terminal: bool = False,
) -> Report:
    """:func:`check` for a snapshot read elsewhere (the PostgreSQL store's)."""
    report = _judge(
        snapshot, set(acknowledged), records, set(retried), set(deleted), lease_ttl,
        require_terminal,
    )  # fmt: skip
    assert not report.problems, "checker failed:\n  " + "\n  ".join(report.problems)
    return report


def _inspect(
    database: Path | str,
    acknowledged: set[str],
    records: Path | None,
    retried: set[str],
    deleted: set[str],
    lease_ttl: float,
    require_terminal: bool,
) -> Report:
    snapshot = read_postgres(database) if isinstance(database, str) else _read_sqlite(database)
    return _judge(snapshot, acknowledged, records, retried, deleted, lease_ttl, require_terminal)


def _judge(
    snapshot: Snapshot,
    acknowledged: set[str],
    records: Path | None,
    retried: set[str],
    deleted: set[str],
    lease_ttl: float,
    require_terminal: bool,
) -> Report:
    report = Report()
    if snapshot.integrity != "ok":
        report.fail(f"integrity_check: {snapshot.integrity}")
    tasks, attempts = snapshot.tasks, snapshot.attempts
    counts_kept, counts_real = snapshot.counts_kept, snapshot.counts_real
    report.tasks = len(tasks)
    report.attempts = sum(len(a) for a in attempts.values())
    for row in tasks.values():
        report.by_state[row[1]] = report.by_state.get(row[1], 0) + 1

    for task_id in sorted(acknowledged - deleted - set(tasks)):
        report.fail(f"acknowledged create missing: {task_id}")
    if counts_kept != counts_real:
        report.fail(f"task_counts {counts_kept} differ from a recount {counts_real}")

    ran_to_success = set()
    if records is not None:
        ran_to_success = {
            r["lease_id"] for r in read_records(records) if r["outcome"] == "succeeded"
        }
    seen_leases: set[str] = set()
    now_mono = snapshot.now
    for task_id, row in tasks.items():
        _, state, lease_id, expires, _, _ = row
        history = attempts.get(task_id, [])
        succeeded = [a for a in history if a[3] == OUTCOME_SUCCEEDED]
        if len(succeeded) > 1:
            report.fail(f"{task_id}: {len(succeeded)} accepted completions")
        if succeeded and history[-1] is not succeeded[-1] and task_id not in retried:
            report.fail(f"{task_id}: attempts after its SUCCEEDED attempt (reopened)")
        if state == SUCCEEDED and not succeeded:
            report.fail(f"{task_id}: SUCCEEDED with no SUCCEEDED attempt")
        for attempt in history:
            if attempt[2] in seen_leases:
                report.fail(f"{task_id}: lease {attempt[2]} used twice")
            seen_leases.add(attempt[2])
        if records is not None:
            for attempt in succeeded:
                if attempt[2] not in ran_to_success:
                    report.fail(
                        f"{task_id}: completion accepted for lease {attempt[2]}, which no "
                        "worker ran to success"
                    )
        unfinished = [a for a in history if a[4] is None]
        if state == RUNNING:
            if len(unfinished) != 1 or unfinished[0][2] != lease_id:
                report.fail(f"{task_id}: RUNNING with live attempts {[a[2] for a in unfinished]}"
                            f" but current lease {lease_id}")  # fmt: skip
            if expires is not None and expires < now_mono - 2 * lease_ttl * 1_000_000:
                report.fail(f"{task_id}: RUNNING on a lease expired more than two periods ago")
        elif unfinished:
            report.fail(f"{task_id}: state {state} with a live attempt {unfinished[0][2]}")
        if require_terminal and state not in (SUCCEEDED, FAILED, CANCELLED):
            report.fail(f"{task_id}: not terminal (state {state})")
    return report
