"""Scheduler replicas on one PostgreSQL server, one of them SIGKILLed every 1–3 s and
restarted, while tasks are created through all of them and six workers run them: nothing
acknowledged is lost, nothing completes twice, no lease is used twice (the fault suite's
checker, on a snapshot read from PostgreSQL); and what the workers ran keeps every group in
order, one at a time, and a type's running limit, across the replicas."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path
from typing import Any

import grpc
import pytest

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.faults.checker import (
    judge,
    read_postgres,
)
from tests.faults.profile import Profile
from tests.support.cluster import FAST_WORKER, Cluster
from tests.support.intervals import max_overlap
from tests.support.processes import ManagedProcess, SchedulerProcess, worker_args
from tests.support.recording_handlers import read_records
from tests.support.tasks import request

MODULE = ("--module", "tests.support.recording_handlers")
REPLICAS, WORKERS, BATCH = 3, 6, 100
GROUPS, LIMIT = 20, 3  # tasks i % 7 == 0 go to group i % GROUPS; i % 5 == 0 are limited


def _task_of(i: int, records: Path) -> task_service_pb2.CreateTaskRequest:
    return request(
        "recorded_limited" if i % 5 == 0 else "recorded",
        {"record_dir": str(records), "sleep": 0.002, "fail_once": i % 10 == 0},
        idempotency_key=f"k{i}",
        group=f"g{i % GROUPS}" if i % 7 == 0 else "",
    )


async def _create_all(
    cluster: Cluster, replicas: list[SchedulerProcess], total: int, records: Path, acked: list[str]
) -> None:
    """Create ``total`` tasks in keyed batches through the replicas in turn, retrying a
    batch on the next replica until one answers (the keys prevent duplicates)."""
    turn = 0
    for start in range(0, total, BATCH):
        batch = task_service_pb2.BatchCreateTasksRequest(
            tasks=[_task_of(i, records) for i in range(start, min(total, start + BATCH))]
        )
        while True:
            turn += 1
            try:
                stub = cluster.tasks(replicas[turn % len(replicas)])
                answer = await stub.BatchCreateTasks(batch, timeout=5)
                acked.extend(t.id for t in answer.tasks)
                break
            except grpc.aio.AioRpcError:  # that replica is down: the next one
                await asyncio.sleep(0.02)


@pytest.mark.postgres_only
@pytest.mark.timeout(1800)
async def test_replicas_on_postgres_with_one_killed_every_few_seconds(
    cluster: Cluster, tmp_path: Path, profile: Profile
) -> None:
    assert cluster.database_url is not None
    postgres_url = cluster.database_url
    rng = random.Random(1)
    total = profile.kill_tasks
    records = tmp_path / "records"
    records.mkdir()
    database = ("--database", postgres_url, "--task-types", "recorded,recorded_limited")
    replicas = [
        await cluster.start_scheduler(*database, name=f"replica{i}") for i in range(REPLICAS)
    ]
    addresses = [r.grpc_address for r in replicas]
    for i in range(WORKERS):
        # Each worker knows every replica, starting from a different one; it moves to the
        # next when its connection breaks.
        order = addresses[i % REPLICAS :] + addresses[: i % REPLICAS]
        worker = ManagedProcess(
            f"w{i}",
            worker_args(",".join(order), f"w{i}", *FAST_WORKER, *MODULE, "--slots", "8"),
            cluster.dir,
            env=None,
        )
        cluster.workers.append(worker)
    for i in range(WORKERS):
        await cluster.wait_for_worker(f"w{i}", replicas[0])
    await cluster.admin(replicas[1]).SetTaskTypeLimits(
        admin_service_pb2.SetTaskTypeLimitsRequest(
            type="recorded_limited", limits=task_pb2.ConcurrencyLimits(max_running=LIMIT)
        )
    )
    acked: list[str] = []
    creator = asyncio.create_task(_create_all(cluster, replicas, total, records, acked))
    kills = 0

    async def all_terminal() -> bool:
        for replica in replicas:
            try:
                stats = await cluster.admin(replica).GetStats(
                    admin_service_pb2.GetStatsRequest(), timeout=5
                )
            except grpc.aio.AioRpcError:
                continue
            t = stats.totals
            return creator.done() and t.succeeded + t.failed + t.cancelled == total
        return False

    while not await all_terminal():
        await asyncio.sleep(rng.uniform(1.0, 3.0))  # the kill schedule, not synchronisation
        if await all_terminal():
            break
        victim = rng.randrange(REPLICAS)
        replicas[victim].kill()
        replicas[victim] = await cluster.restart_scheduler(replicas[victim], *database)
        kills += 1
    await creator
    for worker in cluster.workers:
        assert worker.running, worker.dump()
    report = judge(
        read_postgres(postgres_url),
        acknowledged=acked, records=records, lease_ttl=2.0, require_terminal=True,
    )  # fmt: skip
    print(
        f"\n{total} tasks through {REPLICAS} replicas on PostgreSQL, {WORKERS} workers, "
        f"{kills} kills: checker ok ({report.tasks} tasks, {report.attempts} attempts)"
    )
    assert kills >= 2, "the run ended before a replica was killed twice"
    assert report.tasks == total
    _check_groups_and_limits(read_records(records), acked, total)


def _check_groups_and_limits(runs: list[dict[str, Any]], acked: list[str], total: int) -> None:
    """What the workers ran: the limited type never above its limit at once, and each
    group's tasks one at a time, in the order they were created."""
    limited = [(r["start"], r["end"]) for r in runs if r["type"] == "recorded_limited"]
    assert limited and max_overlap(limited) <= LIMIT, max_overlap(limited)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_task.setdefault(run["task_id"], []).append(run)
    # acked lists ids in creation order (i), batch by batch; a retried batch repeats its ids.
    order = list(dict.fromkeys(acked))
    assert len(order) == total
    for group in range(GROUPS):
        members = [order[i] for i in range(total) if i % 7 == 0 and i % GROUPS == group]
        for earlier, later in itertools.pairwise(members):
            done = max(r["end"] for r in by_task[earlier] if r["outcome"] == "succeeded")
            first_start = min(r["start"] for r in by_task[later])
            assert first_start >= done, f"group g{group}: {later} started before {earlier} ended"
