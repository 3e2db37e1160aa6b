"""A schedule every second for two minutes, with two scheduler processes on one database:
exactly one task per slot, none missing, none doubled."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.tasks import micros

DURATION = 120  # seconds


# Two minutes of wall clock: once, on SQLite. On PostgreSQL the store's part of it runs in
# tests/integration/store/test_postgres_schedules.py (the contract tests, and three
# replicas firing at once make one task per slot).
@pytest.mark.sqlite_only
@pytest.mark.timeout(DURATION + 60)
async def test_every_second_for_two_minutes_fires_each_slot_exactly_once(
    cluster: Cluster,
) -> None:
    first = await cluster.start_scheduler("--task-types", "sum2")
    second = await cluster.start_scheduler()
    await cluster.start_worker(scheduler=second)
    admin = cluster.admin(first)
    made = await admin.CreateSchedule(
        admin_service_pb2.CreateScheduleRequest(
            schedule_id="tick",
            schedule=admin_service_pb2.Schedule(
                cron="* * * * * *",
                template=task_service_pb2.CreateTaskRequest(type="sum2"),
            ),
        )
    )
    start = micros(made.next_fire_at)
    await asyncio.sleep(DURATION)  # the scenario's length, not a synchronisation
    await admin.PauseSchedule(admin_service_pb2.PauseScheduleRequest(id="tick"))
    stopped = micros(
        (await admin.GetSchedule(admin_service_pb2.GetScheduleRequest(id="tick"))).next_fire_at
    )

    tasks: list[task_pb2.Task] = []
    token = ""
    stub = cluster.tasks(second)
    while True:
        page = await stub.ListTasks(
            task_service_pb2.ListTasksRequest(
                labels={"schedule": "tick"}, page_size=1000, page_token=token
            )
        )
        tasks.extend(page.tasks)
        token = page.next_page_token
        if not token:
            break
    slots = sorted(micros(t.run_at) for t in tasks)
    assert len(slots) == len(set(slots)), "a slot fired twice"
    expected = list(range(start, stopped, 1_000_000))
    assert slots == expected, (
        f"{len(slots)} tasks for {len(expected)} slots; missing "
        f"{sorted(set(expected) - set(slots))[:5]}, extra {sorted(set(slots) - set(expected))[:5]}"
    )
    assert len(slots) >= DURATION
    lateness = sorted(micros(t.created_at) - micros(t.run_at) for t in tasks)
    print(
        f"\nschedule: {len(slots)} slots in {DURATION} s on 2 schedulers, each once; created "
        f"after its slot: p50 {lateness[len(lateness) // 2] / 1000:.1f} ms, "
        f"max {lateness[-1] / 1000:.1f} ms"
    )
