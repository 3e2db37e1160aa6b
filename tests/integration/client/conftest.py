"""A real ``grpc.aio`` server on port 0 with scripted TaskService/AdminService servicers.

A test double of the scheduler, kept deliberately small: it stores tasks in a dict, can be
told to fail the next calls of a method with given status codes, and records what every call
carried (metadata, deadline). Tests against the real scheduler live in tests/e2e.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, timestamp_pb2

from orchestrator.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
)
from orchestrator_client.cli import main
from orchestrator_client.convert import duration_from_micros
from orchestrator_client.protocol import CLIENT_METADATA_KEY

TERMINAL = {
    task_pb2.TASK_STATE_SUCCEEDED,
    task_pb2.TASK_STATE_FAILED,
    task_pb2.TASK_STATE_CANCELLED,
}


@dataclass
class Call:
    """What one call carried."""

    method: str
    request: Any
    metadata: dict[str, str]
    time_remaining: float | None


#: What the fake's worker makes of a task: its final state, result and error.
Outcome = tuple[task_pb2.TaskState.ValueType, dict[str, Any] | None, str]


@dataclass
class Script:
    """Shared state and scripted behaviour of the fake scheduler."""

    tasks: dict[str, task_pb2.Task] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    #: method name -> status codes the next calls of that method fail with, in order.
    failures: dict[str, list[grpc.StatusCode]] = field(default_factory=lambda: defaultdict(list))
    #: task id -> states WatchTask walks the task through after sending it as it is.
    watch_states: dict[str, list[task_pb2.TaskState.ValueType]] = field(default_factory=dict)
    #: task ids whose WatchTask stays open after the scripted states, like a task never ending.
    hold_watch: set[str] = field(default_factory=set)
    task_types: dict[str, admin_service_pb2.TaskType] = field(default_factory=dict)
    #: task id -> what ExplainTask answers for it (NOT_FOUND for an unknown task).
    explanations: dict[str, task_service_pb2.ExplainTaskResponse] = field(default_factory=dict)
    #: what GetStats answers about lateness: (p50, p99, max) in microseconds, samples.
    lateness: tuple[tuple[int, int, int], int] = ((0, 0, 0), 0)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    revision: int = 0
    #: BatchCreateTasks refuses types not in ``task_types``, as the real scheduler does.
    strict_types: bool = False
    #: A batch item whose payload has this key is refused (``tasks[i].payload: …``).
    refused_payload_key: str = "refuse_me"
    #: (client, idempotency key) -> the task id the key made first.
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    #: When set, every task a create makes is run in the background: RUNNING, then the
    #: outcome this function gives (None: it stays RUNNING).
    worker: Callable[[task_pb2.Task], Outcome | None] | None = None
    #: Queues of the open WatchTasks calls; every change is offered to each.
    watchers: list[asyncio.Queue[task_pb2.Task]] = field(default_factory=list)
    schedules: dict[str, admin_service_pb2.Schedule] = field(default_factory=dict)
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def change(self, task: task_pb2.Task, **fields: Any) -> None:
        """Change a stored task: a new revision, and an event to every open watch."""
        for name, value in fields.items():
            if isinstance(value, dict):
                getattr(task, name).update(value)
            else:
                setattr(task, name, value)
        self.revision += 1
        task.revision = self.revision
        self.publish(task)

    def publish(self, task: task_pb2.Task) -> None:
        """Offer the task as it is now to every open watch."""
        for queue in self.watchers:
            snapshot = task_pb2.Task()
            snapshot.CopyFrom(task)
            queue.put_nowait(snapshot)

    def run_in_background(self, tasks: list[task_pb2.Task]) -> None:
        if self.worker is None or not tasks:
            return
        job = asyncio.get_running_loop().create_task(self._run(tasks, self.worker))
        self.background.add(job)
        job.add_done_callback(self.background.discard)

    async def _run(
        self, tasks: list[task_pb2.Task], worker: Callable[[task_pb2.Task], Outcome | None]
    ) -> None:
        for task in tasks:
            await asyncio.sleep(0)
            self.change(task, state=task_pb2.TASK_STATE_RUNNING, attempts=1, worker_id="w1")
            outcome = worker(task)
            if outcome is None:
                continue
            state, result, error = outcome
            await asyncio.sleep(0)
            self.change(task, state=state, result=result or {}, error=error, worker_id="")

    def add_task(self, **fields: Any) -> task_pb2.Task:
        task = task_pb2.Task(id=f"t{next(self.ids)}", **fields)
        self.revision += 1
        task.revision = self.revision
        task.created_at.GetCurrentTime()
        self.tasks[task.id] = task
        return task

    async def enter(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        """Record the call; abort it if a failure is scripted for it."""
        metadata = {item.key: item.value for item in context.invocation_metadata() or ()}
        self.calls.append(Call(method, request, metadata, context.time_remaining()))
        if self.failures[method]:
            code = self.failures[method].pop(0)
            await context.abort(code, f"scripted {code.name} for {method}")

    async def task_or_abort(self, task_id: str, context: grpc.aio.ServicerContext) -> task_pb2.Task:
        task = self.tasks.get(task_id)
        if task is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task {task_id!r} not found")
        assert task is not None
        return task


def _matches(task: task_pb2.Task, request: Any) -> bool:
    return (
        (not request.states or task.state in request.states)
        and (not request.types or task.type in request.types)
        and (not request.client or task.client == request.client)
        and (not request.group or task.group == request.group)
        and all(task.labels.get(k) == v for k, v in request.labels.items())
    )


class FakeTaskService(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    async def CreateTask(self, request: Any, context: Any) -> task_pb2.Task:
        await self.script.enter("CreateTask", request, context)
        task = self._create(request, context)
        self.script.run_in_background([task])
        return task

    def _create(self, request: task_service_pb2.CreateTaskRequest, context: Any) -> task_pb2.Task:
        metadata = {item.key: item.value for item in context.invocation_metadata() or ()}
        task = self.script.add_task(
            type=request.type,
            payload=request.payload,
            state=task_pb2.TASK_STATE_PENDING,
            priority=request.priority,
            max_attempts=request.max_attempts or 3,
            group=request.group,
            idempotency_key=request.idempotency_key,
            labels=request.labels,
            client=metadata.get(CLIENT_METADATA_KEY, ""),
            on_failure=request.on_failure or task_pb2.ON_FAILURE_BLOCK,
            concurrency_key=request.concurrency_key,
            cache=request.cache,
        )
        if request.HasField("run_at"):
            task.run_at.CopyFrom(request.run_at)
        if request.HasField("timeout"):
            task.timeout.CopyFrom(request.timeout)
        return task

    async def BatchCreateTasks(self, request: Any, context: Any) -> Any:
        await self.script.enter("BatchCreateTasks", request, context)
        if not 1 <= len(request.tasks) <= 1000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tasks: must hold 1 to 1000")
        # All or nothing, like the real one: check every item before creating any.
        for index, item in enumerate(request.tasks):
            if self.script.strict_types and item.type not in self.script.task_types:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"tasks[{index}].type: unknown task type {item.type!r}; known types: "
                    + ", ".join(sorted(self.script.task_types)),
                )
            if self.script.refused_payload_key in item.payload:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"tasks[{index}].payload: field {self.script.refused_payload_key!r} is refused",
                )
        client = dict(context.invocation_metadata() or ()).get(CLIENT_METADATA_KEY, "")
        tasks, made = [], []
        for item in request.tasks:
            first = self.script.keys.get((client, item.idempotency_key))
            if item.idempotency_key and first in self.script.tasks:
                tasks.append(self.script.tasks[first])
                continue
            task = self._create(item, context)
            if item.idempotency_key:
                self.script.keys[(client, item.idempotency_key)] = task.id
            tasks.append(task)
            made.append(task)
        # One transaction: the tasks it made share one revision.
        if made:
            for task in made:
                task.revision = made[-1].revision
            self.script.revision = made[-1].revision
        response = task_service_pb2.BatchCreateTasksResponse(tasks=tasks)
        for task in made:
            self.script.publish(task)
        self.script.run_in_background(made)
        return response

    async def GetTask(self, request: Any, context: Any) -> task_pb2.Task:
        await self.script.enter("GetTask", request, context)
        return await self.script.task_or_abort(request.id, context)

    async def ListTasks(self, request: Any, context: Any) -> Any:
        await self.script.enter("ListTasks", request, context)
        found = sorted(
            (task for task in self.script.tasks.values() if _matches(task, request)),
            key=lambda task: int(task.id[1:]),
            reverse=request.order_by != "created_at asc",
        )
        start = int(request.page_token or 0)
        size = request.page_size or 50
        page = found[start : start + size]
        more = start + size < len(found)
        return task_service_pb2.ListTasksResponse(
            tasks=page,
            next_page_token=str(start + size) if more else "",
            revision=self.script.revision,
        )

    async def DeleteTask(self, request: Any, context: Any) -> empty_pb2.Empty:
        await self.script.enter("DeleteTask", request, context)
        await self.script.task_or_abort(request.id, context)
        del self.script.tasks[request.id]
        return empty_pb2.Empty()

    async def DeleteTasks(self, request: Any, context: Any) -> Any:
        await self.script.enter("DeleteTasks", request, context)
        doomed = [t.id for t in self.script.tasks.values() if _matches(t, request)]
        for task_id in doomed:
            del self.script.tasks[task_id]
        return task_service_pb2.DeleteTasksResponse(deleted_count=len(doomed))

    async def CancelTask(self, request: Any, context: Any) -> task_pb2.Task:
        await self.script.enter("CancelTask", request, context)
        task = await self.script.task_or_abort(request.id, context)
        task.state = task_pb2.TASK_STATE_CANCELLED
        return task

    async def RetryTask(self, request: Any, context: Any) -> task_pb2.Task:
        await self.script.enter("RetryTask", request, context)
        task = await self.script.task_or_abort(request.id, context)
        if task.state not in (task_pb2.TASK_STATE_FAILED, task_pb2.TASK_STATE_CANCELLED):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"task {task.id} is active")
        task.state = task_pb2.TASK_STATE_PENDING
        return task

    async def WatchTask(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self.script.enter("WatchTask", request, context)
        task = await self.script.task_or_abort(request.id, context)
        upserted = task_service_pb2.TASK_EVENT_TYPE_UPSERTED
        yield task_service_pb2.TaskEvent(type=upserted, task=task, revision=task.revision)
        for state in self.script.watch_states.get(task.id, []):
            await asyncio.sleep(0)
            task.state = state
            task.attempts += state == task_pb2.TASK_STATE_RUNNING
            if state == task_pb2.TASK_STATE_FAILED:
                task.error = "boom"
            self.script.revision += 1
            task.revision = self.script.revision
            yield task_service_pb2.TaskEvent(type=upserted, task=task, revision=task.revision)
            if state in TERMINAL:
                return
        if task.id in self.script.hold_watch:
            await asyncio.Event().wait()

    async def RunTask(self, request: Any, context: Any) -> task_pb2.Task:
        await self.script.enter("RunTask", request, context)
        task = await self.script.task_or_abort(request.id, context)
        # As the real one: a task already due is answered unchanged; only a running or
        # finished one is refused.
        if task.state == task_pb2.TASK_STATE_RUNNING or task.state in TERMINAL:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"task {task.id} is running or finished"
            )
        if task.state == task_pb2.TASK_STATE_SCHEDULED:
            self.script.change(task, state=task_pb2.TASK_STATE_PENDING)
        return task

    async def ExplainTask(self, request: Any, context: Any) -> Any:
        await self.script.enter("ExplainTask", request, context)
        task = await self.script.task_or_abort(request.id, context)
        explanation = self.script.explanations.get(task.id)
        if explanation is None:
            return task_service_pb2.ExplainTaskResponse(
                task_id=task.id, state=task.state, summary="It is queued."
            )
        return explanation

    async def WatchTasks(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self.script.enter("WatchTasks", request, context)
        upserted = task_service_pb2.TASK_EVENT_TYPE_UPSERTED
        # Subscribed before the replay: a change during it comes (again) from the queue.
        queue: asyncio.Queue[task_pb2.Task] = asyncio.Queue()
        self.script.watchers.append(queue)
        try:
            replay = sorted(self.script.tasks.values(), key=lambda t: (t.revision, t.id))
            for task in replay:
                if task.revision > request.since_revision and _matches(task, request):
                    yield task_service_pb2.TaskEvent(
                        type=upserted, task=task, revision=task.revision
                    )
            while True:  # until the client leaves, like the real one
                task = await queue.get()
                if _matches(task, request):
                    yield task_service_pb2.TaskEvent(
                        type=upserted, task=task, revision=task.revision
                    )
        finally:
            self.script.watchers.remove(queue)


class FakeAdminService(admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script
        for name in ("foo", "bar"):
            script.task_types[name] = admin_service_pb2.TaskType(
                name=name,
                state=admin_service_pb2.TASK_TYPE_STATE_ACTIVE,
                counts=admin_service_pb2.TaskCounts(pending=2, succeeded=5),
                connected_workers=1,
            )

    async def ListTaskTypes(self, request: Any, context: Any) -> Any:
        await self.script.enter("ListTaskTypes", request, context)
        types = list(self.script.task_types.values())
        # Pages of one, to exercise the client's page following.
        index = int(request.page_token or 0)
        more = index + 1 < len(types)
        return admin_service_pb2.ListTaskTypesResponse(
            task_types=types[index : index + 1], next_page_token=str(index + 1) if more else ""
        )

    async def _set_state(self, request: Any, context: Any, state: Any) -> Any:
        task_type = self.script.task_types.get(request.type)
        if task_type is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown task type {request.type!r}")
        assert task_type is not None
        task_type.state = state
        return task_type

    async def PauseTaskType(self, request: Any, context: Any) -> Any:
        await self.script.enter("PauseTaskType", request, context)
        return await self._set_state(request, context, admin_service_pb2.TASK_TYPE_STATE_PAUSED)

    async def ResumeTaskType(self, request: Any, context: Any) -> Any:
        await self.script.enter("ResumeTaskType", request, context)
        return await self._set_state(request, context, admin_service_pb2.TASK_TYPE_STATE_ACTIVE)

    async def SetTaskTypeLimits(self, request: Any, context: Any) -> Any:
        await self.script.enter("SetTaskTypeLimits", request, context)
        task_type = self.script.task_types.get(request.type)
        if task_type is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown task type {request.type!r}")
        assert task_type is not None
        task_type.limits.CopyFrom(request.limits)
        return task_type

    async def CreateSchedule(self, request: Any, context: Any) -> Any:
        await self.script.enter("CreateSchedule", request, context)
        schedule = admin_service_pb2.Schedule()
        schedule.CopyFrom(request.schedule)
        if len(schedule.cron.split()) not in (5, 6):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "schedule.cron: expected 5 or 6 fields"
            )
        schedule.id = request.schedule_id or f"s{next(self.script.ids)}"
        if schedule.id in self.script.schedules:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS, f"schedule {schedule.id!r} exists already"
            )
        schedule.time_zone = schedule.time_zone or "UTC"
        schedule.state = admin_service_pb2.SCHEDULE_STATE_ACTIVE
        schedule.created_at.GetCurrentTime()
        schedule.next_fire_at.FromSeconds(schedule.created_at.seconds + 60)
        self.script.schedules[schedule.id] = schedule
        return schedule

    async def _schedule(self, schedule_id: str, context: Any) -> admin_service_pb2.Schedule:
        schedule = self.script.schedules.get(schedule_id)
        if schedule is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"schedule {schedule_id!r} not found")
        assert schedule is not None
        return schedule

    async def GetSchedule(self, request: Any, context: Any) -> Any:
        await self.script.enter("GetSchedule", request, context)
        return await self._schedule(request.id, context)

    async def ListSchedules(self, request: Any, context: Any) -> Any:
        await self.script.enter("ListSchedules", request, context)
        schedules = list(self.script.schedules.values())
        start = int(request.page_token or 0)
        size = request.page_size or 100
        more = start + size < len(schedules)
        return admin_service_pb2.ListSchedulesResponse(
            schedules=schedules[start : start + size],
            next_page_token=str(start + size) if more else "",
        )

    async def DeleteSchedule(self, request: Any, context: Any) -> empty_pb2.Empty:
        await self.script.enter("DeleteSchedule", request, context)
        await self._schedule(request.id, context)
        del self.script.schedules[request.id]
        return empty_pb2.Empty()

    async def PauseSchedule(self, request: Any, context: Any) -> Any:
        await self.script.enter("PauseSchedule", request, context)
        schedule = await self._schedule(request.id, context)
        schedule.state = admin_service_pb2.SCHEDULE_STATE_PAUSED
        return schedule

    async def ResumeSchedule(self, request: Any, context: Any) -> Any:
        await self.script.enter("ResumeSchedule", request, context)
        schedule = await self._schedule(request.id, context)
        schedule.state = admin_service_pb2.SCHEDULE_STATE_ACTIVE
        return schedule

    async def ListWorkers(self, request: Any, context: Any) -> Any:
        await self.script.enter("ListWorkers", request, context)
        heartbeat = timestamp_pb2.Timestamp()
        heartbeat.GetCurrentTime()
        worker = admin_service_pb2.Worker(
            id="w1",
            hostname="host",
            pid=42,
            task_types=["foo", "bar"],
            slots=4,
            in_flight=1,
            last_heartbeat_at=heartbeat,
            scheduler_id="s1",
        )
        return admin_service_pb2.ListWorkersResponse(workers=[worker])

    async def GetStats(self, request: Any, context: Any) -> Any:
        await self.script.enter("GetStats", request, context)
        (p50, p99, worst), samples = self.script.lateness
        return admin_service_pb2.GetStatsResponse(
            lateness_p50=duration_from_micros(p50),
            lateness_p99=duration_from_micros(p99),
            lateness_max=duration_from_micros(worst),
            lateness_samples=samples,
            totals=admin_service_pb2.TaskCounts(pending=2, succeeded=5, failed=1),
            by_type=[
                admin_service_pb2.TypeStats(
                    type="foo", counts=admin_service_pb2.TaskCounts(pending=2, succeeded=5)
                )
            ],
            retries=3,
            over_retry_limit=1,
            most_retried=[
                admin_service_pb2.TaskRetries(task_id="t9", type="foo", attempts=3, max_attempts=3)
            ],
            finished_last_minute=6,
            throughput_per_second=0.1,
            connected_workers=1,
        )


@dataclass
class FakeScheduler:
    target: str
    script: Script


@pytest.fixture
async def scheduler() -> AsyncIterator[FakeScheduler]:
    server = grpc.aio.server()
    script = Script()
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(FakeTaskService(script), server)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(FakeAdminService(script), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield FakeScheduler(f"127.0.0.1:{port}", script)
    finally:
        for job in list(script.background):
            job.cancel()
        await server.stop(grace=None)


@dataclass
class Result:
    """What one ``taskctl`` run did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Taskctl = Callable[..., Awaitable[Result]]


@pytest.fixture
def taskctl(scheduler: FakeScheduler, capsys: pytest.CaptureFixture[str]) -> Taskctl:
    """Run ``main`` in a thread (it runs its own event loop) against the fake scheduler."""

    async def run(*argv: str, environ: dict[str, str] | None = None) -> Result:
        args = ["--scheduler", scheduler.target, *argv]
        code = await asyncio.to_thread(main, args, environ=environ or {})
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
