"""The retention pruner on the real SQLite store: rounds, batches, and a file that stops growing."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from scheduler_service.domain.model import AttemptEnd, AttemptOutcome, ClaimRequest
from scheduler_service.domain.retention import RetentionPolicy
from scheduler_service.engine.metrics import SchedulerMetrics
from scheduler_service.engine.retention import PruneRound, RetentionPruner
from scheduler_service.store.sqlite.store import SqliteOptions, SqliteTaskStore
from tests.integration.store.test_store_contract import TTL, spec
from tests.support.clock import ManualClock

POLICY = RetentionPolicy.from_seconds(succeeded=10, failed=10, cancelled=10, tombstones=10)
PAYLOAD = '{"data":"' + "x" * 1000 + '"}'


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteTaskStore]:
    store = SqliteTaskStore(str(tmp_path / "store.db"), SqliteOptions(clock=ManualClock()))
    await store.open()
    await store.register_task_types(["foo"])
    try:
        yield store
    finally:
        await store.close()


def clock_of(store: SqliteTaskStore) -> ManualClock:
    clock = store.options.clock
    assert isinstance(clock, ManualClock)
    return clock


async def run_tasks(store: SqliteTaskStore, count: int) -> None:
    """``count`` tasks with 1 KiB payloads, created, leased and succeeded."""
    base = replace(spec(), payload_json=PAYLOAD, labels={"team": "a"})
    await store.create_tasks([base] * count)
    outcome = await store.claim([ClaimRequest("s1", "w1", frozenset({"foo"}), count, TTL)])
    await store.end_attempts(
        [AttemptEnd(x.lease_id, AttemptOutcome.SUCCEEDED, '{"ok":1}') for x in outcome.leases[0]]
    )


def page_count(store: SqliteTaskStore) -> int:
    with sqlite3.connect(store.path) as conn:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])


async def test_a_round_prunes_in_batches_until_none_are_left(store: SqliteTaskStore) -> None:
    metrics = SchedulerMetrics()
    pruner = RetentionPruner(store, metrics, POLICY, interval=60, batch=7)
    await run_tasks(store, 30)
    assert await pruner.prune_once() == PruneRound(tasks=0, tombstones=0)  # not old yet
    clock_of(store).advance(11)
    revision = await store.revision()
    assert await pruner.prune_once() == PruneRound(tasks=30, tombstones=0)
    # One commit per batch of at most 7 (a batch may stop sooner on a slow machine).
    assert await store.revision() - revision >= 5
    assert metrics.registry.get_sample_value("orchestrator_tasks_pruned_total") == 30
    clock_of(store).advance(11)
    assert await pruner.prune_once() == PruneRound(tasks=0, tombstones=30)
    assert await store.changes_since((0, ""), 100) == []


async def test_the_file_stops_growing_under_steady_load(store: SqliteTaskStore) -> None:
    """Freed pages are reused: with auto_vacuum off the file keeps the peak live set's size
    (about two rounds of tasks here), however many tasks pass through it."""
    pruner = RetentionPruner(store, SchedulerMetrics(), POLICY, interval=60, batch=100)
    sizes = []
    pruned = 0
    for _ in range(40):
        await run_tasks(store, 200)
        clock_of(store).advance(6)  # each round's tasks go two rounds later
        pruned += (await pruner.prune_once()).tasks
        sizes.append(page_count(store))
    assert pruned >= 38 * 200
    settled = sizes[9]
    # Unpruned, each round would add ~90 pages (200 tasks of 1 KiB and their rows).
    assert sizes[-1] <= settled * 1.03, f"pages per round: {sizes}"
    assert sizes[-1] - sizes[0] < 5 * 90, f"pages per round: {sizes}"
