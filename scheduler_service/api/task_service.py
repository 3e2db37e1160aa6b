"""orchestrator.v1.TaskService: decode, call :class:`TaskOperations`, encode.

Tenancy: every method gets the :class:`~scheduler_service.security.access.Caller` that the
server's guard made for the call. A caller with a ``tenant`` (a ``client``-role caller when
authentication is on) sees and changes only its own tasks: another client's task answers
NOT_FOUND with the same words as a task that does not exist, and lists, watches and
deletes by filter are narrowed to its own tasks on the server, on every page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2, struct_pb2

from orchestrator.v1 import task_pb2, task_service_pb2
from orchestrator_client.protocol import CLIENT_METADATA_KEY

from ..domain.clock import Clock
from ..domain.errors import InvalidArgument, NotFound
from ..domain.explain import Explanation
from ..domain.model import AttemptRecord, TaskFilter, TaskRecord, TaskSpec
from ..engine.feed import ChangeFeed
from ..engine.metrics import SchedulerMetrics
from ..engine.tasks import TaskOperations
from ..security.access import Caller
from ..tracing import CreateSpan, SchedulerTracing
from . import codec, page_tokens, validation
from .errors import server_stream, unary
from .validation import Limits

BASIC = task_pb2.TASK_VIEW_BASIC
FULL = task_pb2.TASK_VIEW_FULL
_ORDERS = {"": True, "created_at desc": True, "created_at asc": False, "created_at": False}


def caller_identity(context: grpc.aio.ServicerContext[Any, Any], limits: Limits) -> str:
    """Who is calling: the ``orchestrator-client`` metadata value, or empty."""
    for key, value in context.invocation_metadata() or ():
        if key == CLIENT_METADATA_KEY:
            text = value if isinstance(value, str) else value.decode(errors="replace")
            if len(text) > limits.max_name_length:
                raise InvalidArgument(
                    f"metadata {CLIENT_METADATA_KEY}",
                    f"must be at most {limits.max_name_length} characters",
                )
            return text
    return ""


def client_of(caller: Caller, context: grpc.aio.ServicerContext[Any, Any], limits: Limits) -> str:
    """The ``client`` of what this caller creates: its principal when authentication is on
    (the ``orchestrator-client`` header is ignored then), else the header."""
    if caller.authenticated:
        return caller.principal
    return caller_identity(context, limits)


def _not_found(task_id: str) -> NotFound:
    # The same words as TaskOperations uses for a task that does not exist.
    return NotFound(f"task {task_id} not found")


class TaskServicer:
    def __init__(
        self,
        tasks: TaskOperations,
        feed: ChangeFeed,
        clock: Clock,
        limits: Limits,
        metrics: SchedulerMetrics,
        tracing: SchedulerTracing | None = None,
    ) -> None:
        self.tasks = tasks
        self.feed = feed
        self.clock = clock
        self.limits = limits
        self.metrics = metrics
        #: None when tracing is off: creates then take their plain path, no span made.
        self.tracing = tracing

    @unary
    async def CreateTask(
        self,
        request: task_service_pb2.CreateTaskRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> task_pb2.Task:
        if self.tracing is None:
            return await self._create_task(request, context, caller, None)
        with self.tracing.create_span("CreateTask", context) as span:
            return await self._create_task(request, context, caller, span)

    async def _create_task(
        self,
        request: task_service_pb2.CreateTaskRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
        span: CreateSpan | None,
    ) -> task_pb2.Task:
        now = self.clock.now()
        spec = validation.task_spec(
            request, client=client_of(caller, context, self.limits), now=now, limits=self.limits
        )
        if span is not None:
            spec = dataclasses.replace(spec, trace_context=span.trace_context)
        (task,) = await self.tasks.create([spec], ["type"])
        if span is not None:
            span.created([task])
        return codec.task_message(
            task, self.clock.now(), full=True, payload=_same_payload(task, spec, request)
        )

    @unary
    async def BatchCreateTasks(
        self,
        request: task_service_pb2.BatchCreateTasksRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> task_service_pb2.BatchCreateTasksResponse:
        if self.tracing is None:
            return await self._batch_create_tasks(request, context, caller, None)
        with self.tracing.create_span("BatchCreateTasks", context) as span:
            return await self._batch_create_tasks(request, context, caller, span)

    async def _batch_create_tasks(
        self,
        request: task_service_pb2.BatchCreateTasksRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
        span: CreateSpan | None,
    ) -> task_service_pb2.BatchCreateTasksResponse:
        count = len(request.tasks)
        if not 1 <= count <= self.limits.max_batch:
            raise InvalidArgument(
                "tasks", f"must hold 1 to {self.limits.max_batch} tasks, got {count}"
            )
        client = client_of(caller, context, self.limits)
        now = self.clock.now()
        specs = [
            validation.task_spec(
                item, client=client, now=now, limits=self.limits, prefix=f"tasks[{i}]."
            )
            for i, item in enumerate(request.tasks)
        ]
        if span is not None:
            specs = [dataclasses.replace(s, trace_context=span.trace_context) for s in specs]
        fields = [f"tasks[{i}].type" for i in range(count)]
        created = await self.tasks.create(specs, fields)
        if span is not None:
            span.created(created)
        now = self.clock.now()
        return task_service_pb2.BatchCreateTasksResponse(
            tasks=[
                codec.task_message(task, now, full=True, payload=_same_payload(task, spec, item))
                for task, spec, item in zip(created, specs, request.tasks, strict=True)
            ]
        )

    @unary
    async def GetTask(
        self,
        request: task_service_pb2.GetTaskRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> task_pb2.Task:
        task_id = validation.require_task_id("id", request.id)
        task, attempts = await self._get(caller, task_id)
        return codec.task_message(task, self.clock.now(), full=True, attempts=attempts)

    @unary
    async def ListTasks(
        self,
        request: task_service_pb2.ListTasksRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> task_service_pb2.ListTasksResponse:
        flt = self._filter(request, caller)
        if request.order_by.strip().lower() not in _ORDERS:
            raise InvalidArgument(
                "order_by", f"{request.order_by!r}: use 'created_at desc' or 'created_at asc'"
            )
        descending = _ORDERS[request.order_by.strip().lower()]
        size = validation.page_size(
            "page_size", request.page_size, self.limits.default_page_size, self.limits.max_page_size
        )
        view = validation.view("view", request.view, BASIC)
        fingerprint = page_tokens.fingerprint([page_tokens.filter_key(flt), descending])
        after = page_tokens.decode(request.page_token, fingerprint)
        page = await self.tasks.list(
            flt, page_size=size, after_id=after, descending=descending, full=view == FULL
        )
        now = self.clock.now()
        return task_service_pb2.ListTasksResponse(
            tasks=[
                codec.task_message(t, now, full=view == FULL, attempts=page.attempts.get(t.id))
                for t in page.tasks
            ],
            next_page_token=(page_tokens.encode(page.last_id, fingerprint) if page.last_id else ""),
            revision=page.revision,
        )

    @unary
    async def DeleteTask(
        self,
        request: task_service_pb2.DeleteTaskRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> empty_pb2.Empty:
        await self.tasks.delete(await self._own_id(caller, request.id))
        return empty_pb2.Empty()

    @unary
    async def DeleteTasks(
        self,
        request: task_service_pb2.DeleteTasksRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> task_service_pb2.DeleteTasksResponse:
        flt = self._filter(request, caller)
        if caller.tenant is not None and not request.confirm_all and _is_unfiltered(request):
            # The tenant's own filter must not count as "a filter was given".
            raise InvalidArgument(
                "confirm_all", "must be true to delete every task (no filter was given)"
            )
        count = await self.tasks.delete_matching(flt, request.confirm_all)
        return task_service_pb2.DeleteTasksResponse(deleted_count=count)

    @unary
    async def CancelTask(
        self,
        request: task_service_pb2.CancelTaskRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> task_pb2.Task:
        task = await self.tasks.cancel(await self._own_id(caller, request.id))
        return codec.task_message(task, self.clock.now(), full=True)

    @unary
    async def RetryTask(
        self,
        request: task_service_pb2.RetryTaskRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> task_pb2.Task:
        task = await self.tasks.retry(await self._own_id(caller, request.id))
        return codec.task_message(task, self.clock.now(), full=True)

    @unary
    async def RunTask(
        self,
        request: task_service_pb2.RunTaskRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> task_pb2.Task:
        task = await self.tasks.run_now(await self._own_id(caller, request.id))
        return codec.task_message(task, self.clock.now(), full=True)

    @unary
    async def ExplainTask(
        self,
        request: task_service_pb2.ExplainTaskRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> task_service_pb2.ExplainTaskResponse:
        task, explanation = await self.tasks.explain(await self._own_id(caller, request.id))
        if caller.tenant is not None:
            explanation = await self._redacted(explanation, caller.tenant)
        return codec.explanation_message(task, explanation, self.clock.now())

    @server_stream
    async def WatchTask(
        self,
        request: task_service_pb2.WatchTaskRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> AsyncIterator[task_service_pb2.TaskEvent]:
        task_id = validation.require_task_id("id", request.id)
        full = validation.view("view", request.view, FULL) == FULL
        # Subscribe before reading the task, so no change between the two is lost.
        with self.feed.subscribe(TaskFilter(task_id=task_id)) as subscription:
            task, attempts = await self._get(caller, task_id)
            yield self._event(task, attempts, full)
            if task.state.is_terminal:
                return
            async for change in subscription.changes():
                if change.revision <= task.revision:
                    continue  # already part of the first answer
                if change.task is None:
                    yield codec.event_message(change, self.clock.now(), full=full)
                    return
                attempts = await self.tasks.attempts(task_id) if full else []
                yield self._event(change.task, attempts, full)
                if change.task.state.is_terminal:
                    return

    def _event(
        self, task: TaskRecord, attempts: list[AttemptRecord], full: bool
    ) -> task_service_pb2.TaskEvent:
        return task_service_pb2.TaskEvent(
            type=task_service_pb2.TASK_EVENT_TYPE_UPSERTED,
            task=codec.task_message(task, self.clock.now(), full=full, attempts=attempts),
            revision=task.revision,
        )

    @server_stream
    async def WatchTasks(
        self,
        request: task_service_pb2.WatchTasksRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> AsyncIterator[task_service_pb2.TaskEvent]:
        flt = self._filter(request, caller)
        full = validation.view("view", request.view, BASIC) == FULL
        if request.since_revision < 0:
            raise InvalidArgument("since_revision", "must not be negative")
        since = request.since_revision or None
        # A tenant's filter always names its client; deletions carry the client too.
        with self.feed.subscribe(flt, since_revision=since) as subscription:
            async for change in subscription.changes():
                yield codec.event_message(change, self.clock.now(), full=full)

    async def _get(self, caller: Caller, task_id: str) -> tuple[TaskRecord, list[AttemptRecord]]:
        """The task and its attempts, if the caller may see it; else NOT_FOUND."""
        task, attempts = await self.tasks.get(task_id)
        if caller.tenant is not None and task.client != caller.tenant:
            raise _not_found(task_id)
        return task, attempts

    async def _own_id(self, caller: Caller, raw_id: str) -> str:
        """A valid task id the caller may act on (a task's client never changes, so the
        check cannot go stale before the action)."""
        task_id = validation.require_task_id("id", raw_id)
        if caller.tenant is not None:
            await self._get(caller, task_id)
        return task_id

    async def _redacted(self, explanation: Explanation, tenant: str) -> Explanation:
        """The explanation without the ids of other clients' tasks (a group or a cached
        result may be shared with them): they become "another client's task"."""
        foreign: set[str] = set()
        for reason in explanation.reasons:
            other = reason.blocking_task_id
            if other and other not in foreign:
                try:
                    task, _ = await self.tasks.get(other)
                except NotFound:
                    continue
                if task.client != tenant:
                    foreign.add(other)
        if not foreign:
            return explanation

        def hide(text: str) -> str:
            for other in foreign:
                text = text.replace(f"task {other}", "another client's task")
                text = text.replace(other, "another client's task")
            return text

        reasons = [
            dataclasses.replace(
                r,
                message=hide(r.message),
                blocking_task_id="" if r.blocking_task_id in foreign else r.blocking_task_id,
            )
            for r in explanation.reasons
        ]
        return dataclasses.replace(explanation, summary=hide(explanation.summary), reasons=reasons)

    def _filter(
        self,
        request: (
            task_service_pb2.ListTasksRequest
            | task_service_pb2.DeleteTasksRequest
            | task_service_pb2.WatchTasksRequest
        ),
        caller: Caller,
    ) -> TaskFilter:
        """The request's filter; a tenant's is narrowed to its own tasks (naming another
        client is INVALID_ARGUMENT rather than an empty answer, so a mistake shows)."""
        client = request.client
        if caller.tenant is not None:
            if client and client != caller.tenant:
                raise InvalidArgument(
                    "client",
                    f"must be empty or {caller.tenant!r}: a client sees only its own tasks",
                )
            client = caller.tenant
        return validation.task_filter(
            states=request.states,
            types=request.types,
            client=client,
            group=request.group,
            labels=request.labels,
            limits=self.limits,
        )


def _is_unfiltered(request: task_service_pb2.DeleteTasksRequest) -> bool:
    return not (
        request.states or request.types or request.client or request.group or request.labels
    )


def _same_payload(
    task: TaskRecord, spec: TaskSpec, request: task_service_pb2.CreateTaskRequest
) -> struct_pb2.Struct | None:
    """The request's payload Struct when the answered task carries that payload (not an
    earlier task returned for its idempotency key), to be copied into the answer."""
    return request.payload if task.payload_json == spec.payload_json else None
