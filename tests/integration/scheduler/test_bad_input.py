"""Every RPC refuses malformed or out-of-range input with the precise status and field.

After each refusal nothing was written (counts unchanged) and the service keeps serving.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.integration.scheduler.conftest import InProcess

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
UNKNOWN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def create(**fields: Any) -> task_service_pb2.CreateTaskRequest:
    fields.setdefault("type", "foo")
    return task_service_pb2.CreateTaskRequest(**fields)


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


async def expect(call: Any, code: grpc.StatusCode, field: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value.details()
    details = raised.value.details() or ""
    assert field in details, f"{field!r} not named in {details!r}"
    return details


async def total_tasks(s: InProcess) -> int:
    stats = await s.admin.GetStats(admin_service_pb2.GetStatsRequest())
    c = stats.totals
    return c.scheduled + c.pending + c.running + c.succeeded + c.failed + c.cancelled


CREATE_CASES = [
    ("missing type", {"type": ""}, "type"),
    ("bad type characters", {"type": "foo bar"}, "type"),
    ("huge type", {"type": "x" * 5000}, "type"),
    ("unknown type", {"type": "fooo"}, "type"),
    ("negative priority", {"priority": -1}, "priority"),
    ("huge priority", {"priority": 2**31 - 1}, "priority"),
    ("negative max_attempts", {"max_attempts": -3}, "max_attempts"),
    ("too many attempts", {"max_attempts": 1000}, "max_attempts"),
    ("run_at far ahead", {"run_at": timestamp_pb2.Timestamp(seconds=253402300799)}, "run_at"),
    ("run_at before 2000", {"run_at": timestamp_pb2.Timestamp(seconds=-5)}, "run_at"),
    (
        "run_at bad nanos",
        {"run_at": timestamp_pb2.Timestamp(seconds=2_000_000_000, nanos=-1)},
        "run_at",
    ),
    ("negative timeout", {"timeout": duration_pb2.Duration(seconds=-1)}, "timeout"),
    ("huge timeout", {"timeout": duration_pb2.Duration(seconds=10**9)}, "timeout"),
    ("nan payload", {"payload": struct({"x": float("nan")})}, "payload"),
    ("oversize payload", {"payload": struct({"x": "y" * (2 * 1024 * 1024)})}, "payload"),
    ("bad label key", {"labels": {"": "v"}}, "labels"),
    ("too many labels", {"labels": {f"k{i}": "v" for i in range(40)}}, "labels"),
    ("bad group", {"group": "has space"}, "group"),
    ("huge idempotency key", {"idempotency_key": "k" * 1000}, "idempotency_key"),
    (
        "backoff multiplier",
        {"backoff": task_pb2.BackoffPolicy(multiplier=0.5)},
        "backoff.multiplier",
    ),
    ("backoff jitter", {"backoff": task_pb2.BackoffPolicy(jitter=2)}, "backoff.jitter"),
    (
        "backoff maximum below initial",
        {
            "backoff": task_pb2.BackoffPolicy(
                initial=duration_pb2.Duration(seconds=10), maximum=duration_pb2.Duration(seconds=1)
            )
        },
        "backoff.maximum",
    ),
]


@pytest.mark.parametrize(
    ("case", "fields", "field"), CREATE_CASES, ids=[c[0] for c in CREATE_CASES]
)
async def test_create_task_refuses(
    scheduler: InProcess, case: str, fields: dict[str, Any], field: str
) -> None:
    await expect(scheduler.tasks.CreateTask(create(**fields)), INVALID, field)
    assert await total_tasks(scheduler) == 0
    ok = await scheduler.tasks.CreateTask(create())  # still serving
    assert ok.id


async def test_unknown_type_lists_the_known_types(scheduler: InProcess) -> None:
    details = await expect(scheduler.tasks.CreateTask(create(type="nope")), INVALID, "type")
    assert "foo" in details and "sum2" in details


async def test_batch_is_all_or_nothing_and_names_the_item(scheduler: InProcess) -> None:
    request = task_service_pb2.BatchCreateTasksRequest(
        tasks=[create(), create(), create(priority=-5), create()]
    )
    await expect(scheduler.tasks.BatchCreateTasks(request), INVALID, "tasks[2].priority")
    request = task_service_pb2.BatchCreateTasksRequest(tasks=[create(), create(type="zzz")])
    await expect(scheduler.tasks.BatchCreateTasks(request), INVALID, "tasks[1].type")
    assert await total_tasks(scheduler) == 0
    await expect(
        scheduler.tasks.BatchCreateTasks(task_service_pb2.BatchCreateTasksRequest()),
        INVALID,
        "tasks",
    )
    too_many = task_service_pb2.BatchCreateTasksRequest(tasks=[create()] * 1001)
    await expect(scheduler.tasks.BatchCreateTasks(too_many), INVALID, "tasks")
    ok = await scheduler.tasks.BatchCreateTasks(
        task_service_pb2.BatchCreateTasksRequest(tasks=[create(), create(type="sum2")])
    )
    assert [t.type for t in ok.tasks] == ["foo", "sum2"]
    assert await total_tasks(scheduler) == 2


@pytest.mark.parametrize("method", ["GetTask", "DeleteTask", "CancelTask", "RetryTask"])
async def test_id_rpcs_refuse_empty_garbage_and_unknown_ids(
    scheduler: InProcess, method: str
) -> None:
    call = getattr(scheduler.tasks, method)
    request_type = getattr(task_service_pb2, f"{method}Request")
    await expect(call(request_type(id="")), INVALID, "id")
    await expect(call(request_type(id="not-an-id\x00\xff")), INVALID, "id")
    await expect(call(request_type(id=UNKNOWN_ID)), NOT_FOUND, UNKNOWN_ID)


async def test_watch_task_refuses_bad_ids(scheduler: InProcess) -> None:
    stream = scheduler.tasks.WatchTask(task_service_pb2.WatchTaskRequest(id="x"))
    await expect(stream.read(), INVALID, "id")
    stream = scheduler.tasks.WatchTask(task_service_pb2.WatchTaskRequest(id=UNKNOWN_ID))
    await expect(stream.read(), NOT_FOUND, UNKNOWN_ID)


LIST_CASES = [
    ("unknown state", {"states": [42]}, "states[0]"),
    ("unspecified state", {"states": [0]}, "states[0]"),
    ("negative page size", {"page_size": -1}, "page_size"),
    ("garbage page token", {"page_token": "%%%not-base64"}, "page_token"),
    ("forged page token", {"page_token": "eyJhZnRlciI6MX0"}, "page_token"),
    ("bad order", {"order_by": "priority"}, "order_by"),
    ("unknown view", {"view": 9}, "view"),
    ("empty type", {"types": [""]}, "types[0]"),
    ("bad label", {"labels": {"bad key": "v"}}, "labels"),
]


@pytest.mark.parametrize(("case", "fields", "field"), LIST_CASES, ids=[c[0] for c in LIST_CASES])
async def test_list_tasks_refuses(
    scheduler: InProcess, case: str, fields: dict[str, Any], field: str
) -> None:
    await expect(
        scheduler.tasks.ListTasks(task_service_pb2.ListTasksRequest(**fields)), INVALID, field
    )


async def test_a_huge_echoed_value_still_gets_its_precise_status(scheduler: InProcess) -> None:
    """Messages quote the bad value; a huge one is cut, so that the status still arrives
    (gRPC refuses trailers past 8 KiB, which would turn it into RESOURCE_EXHAUSTED)."""
    huge = "é" * 20_000
    details = await expect(
        scheduler.tasks.ListTasks(task_service_pb2.ListTasksRequest(order_by=huge)),
        INVALID,
        "order_by",
    )
    assert details.endswith("(truncated)"), details[-40:]
    assert len(details.encode()) <= 1024


async def test_page_token_cannot_change_filters(scheduler: InProcess) -> None:
    for _ in range(3):
        await scheduler.tasks.CreateTask(create())
    first = await scheduler.tasks.ListTasks(task_service_pb2.ListTasksRequest(page_size=1))
    assert first.next_page_token
    await expect(
        scheduler.tasks.ListTasks(
            task_service_pb2.ListTasksRequest(
                page_size=1, page_token=first.next_page_token, types=["sum2"]
            )
        ),
        INVALID,
        "page_token",
    )


async def test_delete_tasks_needs_a_filter_or_confirmation(scheduler: InProcess) -> None:
    await scheduler.tasks.CreateTask(create())
    await expect(
        scheduler.tasks.DeleteTasks(task_service_pb2.DeleteTasksRequest()), INVALID, "confirm_all"
    )
    assert await total_tasks(scheduler) == 1
    done = await scheduler.tasks.DeleteTasks(task_service_pb2.DeleteTasksRequest(confirm_all=True))
    assert done.deleted_count == 1


async def test_retry_and_cancel_check_the_state(scheduler: InProcess) -> None:
    task = await scheduler.tasks.CreateTask(create())
    await expect(
        scheduler.tasks.RetryTask(task_service_pb2.RetryTaskRequest(id=task.id)),
        FAILED_PRECONDITION,
        "PENDING",
    )
    await scheduler.tasks.CancelTask(task_service_pb2.CancelTaskRequest(id=task.id))
    await expect(
        scheduler.tasks.CancelTask(task_service_pb2.CancelTaskRequest(id=task.id)),
        FAILED_PRECONDITION,
        "CANCELLED",
    )


async def test_admin_rpcs_refuse_bad_types_and_pages(scheduler: InProcess) -> None:
    admin = scheduler.admin
    await expect(
        admin.PauseTaskType(admin_service_pb2.PauseTaskTypeRequest(type="")), INVALID, "type"
    )
    await expect(
        admin.PauseTaskType(admin_service_pb2.PauseTaskTypeRequest(type="never-seen")),
        NOT_FOUND,
        "never-seen",
    )
    await expect(
        admin.ResumeTaskType(admin_service_pb2.ResumeTaskTypeRequest(type="a b")), INVALID, "type"
    )
    await expect(
        admin.ListWorkers(admin_service_pb2.ListWorkersRequest(page_size=-4)), INVALID, "page_size"
    )
    await expect(
        admin.ListTaskTypes(admin_service_pb2.ListTaskTypesRequest(page_token="zz")),
        INVALID,
        "page_token",
    )


async def test_garbage_bytes_are_refused_and_the_server_keeps_serving(
    scheduler: InProcess,
) -> None:
    """Bytes that are not a CreateTaskRequest at all, sent on the raw method."""
    raw = scheduler.channel.unary_unary(
        "/orchestrator.v1.TaskService/CreateTask",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await raw(b"\xff\xff\xff\xff\x0f garbage")
    assert raised.value.code() == INVALID
    assert "CreateTaskRequest" in (raised.value.details() or "")
    # A field of the wrong wire type (type as a varint) is also not a valid message.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await raw(b"\x08\x96\x01")
    assert raised.value.code() == INVALID
    ok = await scheduler.tasks.CreateTask(create())
    assert ok.state == task_pb2.TASK_STATE_PENDING
