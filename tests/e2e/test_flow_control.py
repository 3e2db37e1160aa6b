"""Credit-based flow control on the lease stream, with real processes: a worker is never given
more leases than the slots it granted, and work spreads over every worker with free slots.
Checked from the workers' own records and from the scheduler's ListWorkers while it runs.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.intervals import max_overlap
from tests.support.polling import eventually
from tests.support.recording_handlers import read_records
from tests.support.tasks import request

MODULE = ("--module", "tests.support.recording_handlers")
SLOTS = {"wide": 3, "narrow": 1}
TASKS = 40


async def test_no_worker_runs_more_than_its_slots_and_both_get_work(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.start_scheduler()
    for name, slots in SLOTS.items():
        await cluster.start_worker(*MODULE, "--slots", str(slots), worker_id=name)
    tasks, admin = cluster.tasks(), cluster.admin()
    listed = await admin.ListWorkers(admin_service_pb2.ListWorkersRequest())
    assert {w.id: (w.slots, w.in_flight) for w in listed.workers} == {
        name: (slots, 0) for name, slots in SLOTS.items()
    }
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    payload = {"record_dir": str(record_dir), "sleep": 0.2}
    batch = await tasks.BatchCreateTasks(
        task_service_pb2.BatchCreateTasksRequest(
            tasks=[request("recorded", payload) for _ in range(TASKS)]
        )
    )
    ids = {task.id for task in batch.tasks}

    # While they run, the scheduler never shows a worker holding more leases than its slots.
    samples: list[dict[str, int]] = []
    over_credit: list[admin_service_pb2.Worker] = []

    async def sample_until_done() -> bool:
        listing = await admin.ListWorkers(admin_service_pb2.ListWorkersRequest())
        samples.append({w.id: w.in_flight for w in listing.workers})
        over_credit.extend(w for w in listing.workers if w.in_flight > SLOTS[w.id])
        stats = await admin.GetStats(admin_service_pb2.GetStatsRequest())
        return stats.totals.succeeded == TASKS

    await eventually(sample_until_done, timeout=30, interval=0.05, message="40 tasks done")
    assert not over_credit, over_credit
    assert len(samples) >= 3, samples
    assert max(s.get("wide", 0) for s in samples) >= 2, samples  # the credit was really used

    runs = read_records(record_dir)
    assert {r["task_id"] for r in runs} == ids
    assert all(r["outcome"] == "succeeded" for r in runs) and len(runs) == TASKS
    by_worker: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        by_worker[run["worker_id"]].append((run["start"], run["end"]))
    # Both ran tasks, the wider one more; each ran as many at once as its slots, never more.
    assert set(by_worker) == set(SLOTS), {w: len(r) for w, r in by_worker.items()}
    assert len(by_worker["wide"]) > len(by_worker["narrow"]), {
        w: len(r) for w, r in by_worker.items()
    }
    for worker, intervals in by_worker.items():
        assert max_overlap(intervals) == SLOTS[worker], (worker, sorted(intervals))

    # The scheduler's record agrees: every task ran once, on the worker the records name.
    listing = await tasks.ListTasks(
        task_service_pb2.ListTasksRequest(page_size=100, view=task_pb2.TASK_VIEW_FULL)
    )
    ran_on = {r["task_id"]: r["worker_id"] for r in runs}
    for task in listing.tasks:
        (attempt,) = task.attempt_history
        assert attempt.worker_id == ran_on[task.id]
