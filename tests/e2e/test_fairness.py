"""Priority without starvation, measured under a sustained stream of high-priority work.

The claim order is by ``due time − priority × aging`` (``--priority-aging`` seconds per
point). So a priority-0 task goes before every priority-P task that became due more than
P × aging after it, however many keep coming: that is the bound this test checks, with
more high-priority work arriving than the worker can run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.tasks import micros, request, wait_terminal

AGING = 0.02  # seconds per priority point
HIGH = 50  # so the bound is 50 × 0.02 s = 1 s
BOUND_US = int(HIGH * AGING * 1_000_000)


async def test_low_priority_starts_within_the_aging_bound_under_sustained_load(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.start_scheduler("--priority-aging", str(AGING), "--task-types", "recorded")
    records = tmp_path / "records"
    records.mkdir()
    await cluster.start_worker("--module", "tests.support.recording_handlers", "--slots", "1")
    tasks = cluster.tasks()
    payload = {"record_dir": str(records), "sleep": 0.02}  # ~40 tasks/s on one slot
    stop = asyncio.Event()

    async def produce() -> None:  # ~100 high-priority tasks/s: more than can run
        while not stop.is_set():
            await tasks.BatchCreateTasks(
                task_service_pb2.BatchCreateTasksRequest(
                    tasks=[request("recorded", payload, priority=HIGH) for _ in range(5)]
                )
            )
            await asyncio.sleep(0.05)  # the producer's pace, not synchronisation

    producer = asyncio.create_task(produce())
    try:
        await asyncio.sleep(1.0)  # build a backlog first (pace of the scenario)
        low = await tasks.CreateTask(request("recorded", payload, priority=0))
        done = await wait_terminal(tasks, low.id, timeout=60)
    finally:
        stop.set()
        await producer
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED
    low_due = micros(done.attempt_history[0].due_at)
    low_leased = micros(done.attempt_history[0].leased_at)

    high: list[task_pb2.Task] = []
    token = ""
    while True:
        page = await tasks.ListTasks(
            task_service_pb2.ListTasksRequest(
                page_size=1000, page_token=token, view=task_pb2.TASK_VIEW_FULL
            )
        )
        high.extend(t for t in page.tasks if t.priority == HIGH)
        token = page.next_page_token
        if not token:
            break
    overtook = [
        t for t in high if t.attempt_history and micros(t.attempt_history[0].leased_at) < low_leased
    ]
    # Only tasks due less than the bound after it went first...
    assert overtook, "the scenario needs high-priority work running before the low task"
    latest = max(micros(t.due_at) for t in overtook)
    assert latest - low_due < BOUND_US + 5_000, (latest - low_due) / 1e6
    # ...and it ran while older high-priority work was still waiting: aging, not an idle gap.
    still_waiting = [
        t for t in high
        if micros(t.due_at) < low_leased
        and (not t.attempt_history or micros(t.attempt_history[0].leased_at) > low_leased)
    ]  # fmt: skip
    assert still_waiting, "the low task only ran once the high-priority backlog was gone"
    print(
        f"\nstarvation: priority 0 vs {HIGH} at {AGING}s/point (bound {BOUND_US / 1e6:.1f} s "
        f"of due time): waited {(low_leased - low_due) / 1e6:.2f} s behind {len(overtook)} "
        f"tasks, the latest due {(latest - low_due) / 1e6:.2f} s after it; "
        f"{len(still_waiting)} high tasks still waiting when it started"
    )
