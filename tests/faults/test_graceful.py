"""Graceful shutdown under load: the workers and the scheduler get SIGTERM together while
about a thousand tasks are running or queued, then everything is started again.

What the README promises ("Operating it"): a worker stops taking leases, lets running tasks
finish within its grace and hands back (RETURNED, not counted) what is still running; the
scheduler tells its workers to drain and waits up to its own grace. So a graceful shutdown
loses no attempt to WORKER_LOST (that outcome is for workers that vanish), runs nothing
twice, and everything finishes after the restart.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.faults.checker import check, read_rows
from tests.faults.profile import Profile
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.recording_handlers import read_records
from tests.support.tasks import request

MODULE = ("--module", "tests.support.recording_handlers")
WORKER = (*MODULE, "--slots", "8", "--reconnect-max-delay", "0.5")
WORKERS = 4
#: Tasks that outlast the grace (FAST: 5 s for workers and scheduler alike), so that the
#: shutdown has to hand them back; they are created first, so they are running by then.
LONG_TASKS = 16
LONG_SLEEP = 7.0
SHORT_TASKS = {"short": 1_000, "long": 5_000}
BATCH = 100
#: The scheduler's FAST lease TTL (tests/support/cluster.py).
LEASE_TTL = 2.0


async def test_sigterm_to_workers_and_scheduler_under_load(
    cluster: Cluster, tmp_path: Path, profile: Profile
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler("--task-types", "recorded")
    workers = [await cluster.start_worker(*WORKER, scheduler=scheduler) for _ in range(WORKERS)]
    stub = cluster.tasks(scheduler)
    admin = cluster.admin(scheduler)

    def payload(sleep: float) -> dict[str, object]:
        return {"record_dir": str(records), "sleep": sleep}

    created: list[str] = []
    long = await stub.BatchCreateTasks(
        task_service_pb2.BatchCreateTasksRequest(
            tasks=[request("recorded", payload(LONG_SLEEP)) for _ in range(LONG_TASKS)]
        )
    )
    created += [t.id for t in long.tasks]
    short_total = SHORT_TASKS[profile.name]
    for start in range(0, short_total, BATCH):
        batch = await stub.BatchCreateTasks(
            task_service_pb2.BatchCreateTasksRequest(
                tasks=[
                    request("recorded", payload(0.05 + (i % 7) * 0.03))
                    for i in range(start, min(short_total, start + BATCH))
                ]
            )
        )
        created += [t.id for t in batch.tasks]

    async def warmed_up() -> admin_service_pb2.GetStatsResponse | None:
        stats = await admin.GetStats(admin_service_pb2.GetStatsRequest())
        return stats if stats.totals.succeeded >= 50 else None

    await eventually(warmed_up, timeout=20, message="the first 50 tasks done")
    long_states = [
        (await stub.GetTask(task_service_pb2.GetTaskRequest(id=i))).state
        for i in created[:LONG_TASKS]
    ]
    assert long_states.count(task_pb2.TASK_STATE_RUNNING) == LONG_TASKS, long_states

    done_before = (await admin.GetStats(admin_service_pb2.GetStatsRequest())).totals.succeeded
    terminated = time.monotonic()
    for process in [*workers, scheduler]:
        process.signal(signal.SIGTERM)
    codes = await asyncio.gather(*(p.wait_async(30) for p in [*workers, scheduler]))
    shutdown = time.monotonic() - terminated
    assert codes == [0] * (WORKERS + 1), [p.dump() for p in [*workers, scheduler]]

    restarted = time.monotonic()
    scheduler = await cluster.restart_scheduler(scheduler, "--task-types", "recorded")
    workers = [
        await cluster.start_worker(*WORKER, scheduler=scheduler, worker_id=w.name) for w in workers
    ]
    admin = cluster.admin(scheduler)

    async def all_terminal() -> bool:
        totals = (await admin.GetStats(admin_service_pb2.GetStatsRequest())).totals
        return totals.succeeded + totals.failed + totals.cancelled == len(created)

    await eventually(all_terminal, timeout=120, interval=0.1, message="everything finished")
    finished = time.monotonic() - restarted
    report = check(
        cluster.location, acknowledged=created, records=records, lease_ttl=LEASE_TTL,
        require_terminal=True,
    )  # fmt: skip

    attempts = _attempts(cluster.location)
    long_ids = set(created[:LONG_TASKS])
    outcomes = Counter(
        task_pb2.AttemptOutcome.Name(task_pb2.AttemptOutcome.ValueType(outcome)).removeprefix(
            "ATTEMPT_OUTCOME_"
        )
        for task_id, outcome, _ in attempts
        if task_id in long_ids
    )
    lost = [a for a in attempts if a[1] == task_pb2.ATTEMPT_OUTCOME_WORKER_LOST]
    runs = Counter(r["task_id"] for r in read_records(records) if r["outcome"] == "succeeded")
    twice = [task_id for task_id, n in runs.items() if n > 1]
    print(
        f"\ngraceful shutdown: {done_before} done, {len(created) - done_before} running or "
        f"queued at SIGTERM; all {WORKERS + 1} processes exited 0 in "
        f"{shutdown:.2f} s; after the restart everything finished in {finished:.2f} s; long "
        f"tasks' attempts {dict(outcomes)}; WORKER_LOST attempts {len(lost)}; checker ok "
        f"({report.tasks} tasks, {report.attempts} attempts)"
    )
    assert not lost, f"a graceful shutdown lost attempts to WORKER_LOST: {lost[:10]}"
    assert outcomes["RETURNED"] == LONG_TASKS, f"long tasks were not handed back: {outcomes}"
    assert not twice, f"tasks run to success twice: {twice[:10]}"
    assert len(runs) == len(created)


def _attempts(location: Path | str) -> list[tuple[Any, ...]]:
    """Every attempt: task id, outcome, error."""
    return read_rows(location, "SELECT task_id, outcome, error FROM attempts")
