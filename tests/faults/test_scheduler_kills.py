"""Scheduler SIGKILL every 1–3 s while tasks are created and run, restarted each time:
nothing acknowledged is lost, nothing completes twice, and the scheduler is ready again
quickly after each restart."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import grpc
import pytest

from orchestrator.v1 import admin_service_pb2, task_service_pb2
from tests.faults.checker import check
from tests.faults.profile import Profile
from tests.support.cluster import Cluster
from tests.support.processes import SchedulerProcess
from tests.support.tasks import request

MODULE = ("--module", "tests.support.recording_handlers")
BATCH = 100


async def _create_all(
    cluster: Cluster, holder: list[SchedulerProcess], total: int, records: Path, acked: list[str]
) -> None:
    """Create ``total`` tasks in keyed batches, retrying each batch until it is answered."""
    for start in range(0, total, BATCH):
        batch = task_service_pb2.BatchCreateTasksRequest(
            tasks=[
                request(
                    "recorded",
                    {"record_dir": str(records), "sleep": 0.002, "fail_once": i % 10 == 0},
                    idempotency_key=f"k{i}",
                )
                for i in range(start, min(total, start + BATCH))
            ]
        )
        while True:
            try:
                stub = cluster.tasks(holder[0])
                answer = await stub.BatchCreateTasks(batch, timeout=5)
                acked.extend(t.id for t in answer.tasks)
                break
            except grpc.aio.AioRpcError:  # the scheduler is down: retry, keys prevent duplicates
                await asyncio.sleep(0.05)


@pytest.mark.timeout(1800)
async def test_scheduler_killed_every_one_to_three_seconds(
    cluster: Cluster, tmp_path: Path, profile: Profile, request: pytest.FixtureRequest
) -> None:
    for number, seed in enumerate(profile.kill_seeds):
        if cluster.database_url is not None and number:  # each run on an empty database
            cluster.database_url = request.getfixturevalue("postgres_server").new_database()
        await _one_run(cluster, tmp_path / f"run{seed}", profile.kill_tasks, seed)


async def _one_run(cluster: Cluster, tmp: Path, total: int, seed: int) -> None:
    rng = random.Random(seed)
    tmp.mkdir()
    cluster.database = tmp / "orchestrator.db"
    records = tmp / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler("--task-types", "recorded", name=f"s{seed}")
    holder = [scheduler]
    workers = [
        await cluster.start_worker(*MODULE, "--slots", "8", scheduler=scheduler) for _ in range(4)
    ]
    acked: list[str] = []
    creator = asyncio.create_task(_create_all(cluster, holder, total, records, acked))
    restarts: list[float] = []

    async def all_terminal() -> bool:
        try:
            stats = await cluster.admin(holder[0]).GetStats(
                admin_service_pb2.GetStatsRequest(), timeout=5
            )
        except grpc.aio.AioRpcError:
            return False
        t = stats.totals
        return creator.done() and t.succeeded + t.failed + t.cancelled == total

    while not await all_terminal():
        await asyncio.sleep(rng.uniform(1.0, 3.0))  # the kill schedule, not synchronisation
        if await all_terminal():
            break
        holder[0].kill()
        holder[0] = await cluster.restart_scheduler(holder[0])
        restarts.append(holder[0].ready_after)
    await creator
    for worker in workers:
        assert worker.running, worker.dump()
    report = check(
        cluster.location, acknowledged=acked, records=records, lease_ttl=2.0,
        require_terminal=True,
    )  # fmt: skip
    restarts.sort()
    p99 = restarts[min(len(restarts) - 1, int(len(restarts) * 0.99))] if restarts else 0.0
    print(
        f"\nseed {seed}: {total} tasks, {len(restarts)} kills, checker ok "
        f"({report.tasks} tasks, {report.attempts} attempts); ready after restart "
        f"p50 {restarts[len(restarts) // 2] if restarts else 0:.2f} s, p99 {p99:.2f} s"
    )
    assert len(restarts) >= 2, "the run ended before the scheduler was killed twice"
    assert p99 <= 1.5, f"restart to ready p99 {p99:.2f} s"
    for worker in workers:
        worker.terminate()
    holder[0].terminate()
