"""Cache, run-now, progress and schedules through the real gRPC API (in-process server)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import duration_pb2

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from orchestrator.v1 import worker_service_pb2 as pb
from tests.integration.scheduler.conftest import InProcess
from tests.integration.scheduler.test_bad_input import create, expect
from tests.integration.scheduler.test_worker_stream import ScriptedWorker
from tests.support.polling import eventually

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def schedule_request(**fields: object) -> admin_service_pb2.CreateScheduleRequest:
    schedule = admin_service_pb2.Schedule(
        cron=str(fields.pop("cron", "* * * * *")),
        time_zone=str(fields.pop("time_zone", "UTC")),
        template=fields.pop("template", task_service_pb2.CreateTaskRequest(type="foo")),  # type: ignore[arg-type]
    )
    return admin_service_pb2.CreateScheduleRequest(schedule=schedule, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "not cron"}, "schedule.cron"),
        ({"cron": "61 * * * *"}, "schedule.cron"),
        ({"time_zone": "Mars/Base"}, "schedule.time_zone"),
        ({"template": task_service_pb2.CreateTaskRequest(type="nope")}, "schedule.template.type"),
        ({"template": task_service_pb2.CreateTaskRequest(type="foo", priority=-1)},
         "schedule.template.priority"),
        ({"template": task_service_pb2.CreateTaskRequest(type="foo", idempotency_key="k")},
         "schedule.template.idempotency_key"),
        ({"schedule_id": "bad id"}, "schedule_id"),
    ],
)  # fmt: skip
async def test_create_schedule_refuses(
    scheduler: InProcess, fields: dict[str, object], field: str
) -> None:
    await expect(scheduler.admin.CreateSchedule(schedule_request(**fields)), INVALID, field)
    listed = await scheduler.admin.ListSchedules(admin_service_pb2.ListSchedulesRequest())
    assert list(listed.schedules) == []


async def test_schedule_lifecycle(scheduler: InProcess) -> None:
    made = await scheduler.admin.CreateSchedule(
        schedule_request(schedule_id="nightly", cron="0 3 * * *", time_zone="Europe/Berlin")
    )
    assert made.id == "nightly" and made.state == admin_service_pb2.SCHEDULE_STATE_ACTIVE
    assert made.template.type == "foo" and made.next_fire_at.seconds > 0
    await expect(
        scheduler.admin.CreateSchedule(schedule_request(schedule_id="nightly")),
        grpc.StatusCode.ALREADY_EXISTS,
        "nightly",
    )
    paused = await scheduler.admin.PauseSchedule(
        admin_service_pb2.PauseScheduleRequest(id="nightly")
    )
    assert paused.state == admin_service_pb2.SCHEDULE_STATE_PAUSED
    got = await scheduler.admin.GetSchedule(admin_service_pb2.GetScheduleRequest(id="nightly"))
    assert got == paused
    await scheduler.admin.DeleteSchedule(admin_service_pb2.DeleteScheduleRequest(id="nightly"))
    await expect(
        scheduler.admin.GetSchedule(admin_service_pb2.GetScheduleRequest(id="nightly")),
        grpc.StatusCode.NOT_FOUND,
        "nightly",
    )


async def test_an_every_second_schedule_creates_tasks(scheduler: InProcess) -> None:
    await scheduler.admin.CreateSchedule(schedule_request(cron="* * * * * *", schedule_id="tick"))

    async def three() -> bool:
        listing = await scheduler.tasks.ListTasks(
            task_service_pb2.ListTasksRequest(labels={"schedule": "tick"})
        )
        return len(listing.tasks) >= 3

    await eventually(three, timeout=6, message="three slots fired")
    schedule = await scheduler.admin.GetSchedule(admin_service_pb2.GetScheduleRequest(id="tick"))
    assert schedule.fired_count >= 3 and schedule.last_task_id


async def test_cache_rules_are_checked(scheduler: InProcess) -> None:
    await expect(
        scheduler.tasks.CreateTask(create(cache_max_age=duration_pb2.Duration(seconds=5))),
        INVALID,
        "cache_max_age",
    )
    await expect(scheduler.tasks.CreateTask(create(cache=True, group="g")), INVALID, "cache")
    first = await scheduler.tasks.CreateTask(create(cache=True))
    second = await scheduler.tasks.CreateTask(create(cache=True))
    assert second.cached and second.cached_from == first.id
    assert second.state == task_pb2.TASK_STATE_PENDING


async def test_run_task_and_progress(scheduler: InProcess) -> None:
    later = await scheduler.tasks.CreateTask(create())
    worker = ScriptedWorker(scheduler, slots=1)
    await worker.welcome()
    await eventually(lambda: worker.leases, message="a lease")
    lease = worker.leases[0]
    worker.send(
        progress=pb.ProgressReport(
            updates=[
                pb.TaskProgress(
                    lease_id=lease.lease_id, percent=40, message="copying", details_json=b'{"n":4}'
                )
            ]
        )
    )

    async def shows_progress() -> task_pb2.Task | None:
        task = await scheduler.tasks.GetTask(task_service_pb2.GetTaskRequest(id=later.id))
        return task if task.progress.message == "copying" else None

    task = await eventually(shows_progress, message="progress stored")
    assert task.progress.percent == 40 and dict(task.progress.details) == {"n": 4}
    await expect(
        scheduler.tasks.RunTask(task_service_pb2.RunTaskRequest(id=later.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RUNNING",
    )
    await worker.close()


async def test_concurrent_lists_and_explains_all_answer(scheduler: InProcess) -> None:
    """Listing and ExplainTask each read one snapshot over several statements; many at
    once must neither collide (a second BEGIN on one connection) nor answer INTERNAL."""
    created = [
        await scheduler.tasks.CreateTask(task_service_pb2.CreateTaskRequest(type="foo"))
        for _ in range(20)
    ]
    calls = [
        scheduler.tasks.ListTasks(
            task_service_pb2.ListTasksRequest(page_size=50, view=task_pb2.TASK_VIEW_FULL)
        )
        for _ in range(40)
    ] + [
        scheduler.tasks.ExplainTask(task_service_pb2.ExplainTaskRequest(id=task.id))
        for task in created
    ]
    answers = await asyncio.gather(*calls)
    listings = answers[:40]
    assert all(len(listing.tasks) == 20 for listing in listings)
    assert all(answer.ByteSize() > 0 for answer in answers[40:])
