"""The asyncio client: one channel to the scheduler, typed methods, retries, deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import grpc
from google.protobuf import empty_pb2
from google.protobuf import message as _message

from orchestrator.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
)

from . import channel as _channel
from ._errors import NotFound, Unavailable, WatchEnded, translated_errors
from ._requests import (
    Backoff,
    CatchUpLike,
    OnFailureLike,
    TaskFilter,
    concurrency_limits,
    create_schedule_request,
    create_task_request,
    create_task_requests,
)
from ._retry import RetryPolicy, call_with_retry
from ._states import TERMINAL_STATES, StateLike, state_name
from .channel import TlsConfig
from .protocol import CLIENT_METADATA_KEY, DEFAULT_SCHEDULER_ADDRESS
from .tracing import outgoing_trace_metadata

if TYPE_CHECKING:
    # The async stub classes exist only in the generated .pyi files.
    from orchestrator.v1.admin_service_pb2_grpc import AdminServiceAsyncStub
    from orchestrator.v1.task_service_pb2_grpc import TaskServiceAsyncStub

Metadata = Sequence[tuple[str, str]]


@contextlib.asynccontextmanager
async def _closing(
    events: AsyncIterator[task_service_pb2.TaskEvent],
) -> AsyncIterator[AsyncIterator[task_service_pb2.TaskEvent]]:
    """Like ``contextlib.aclosing`` for an iterator typed only as ``AsyncIterator``."""
    try:
        yield events
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


class AsyncClient:
    """A client of the scheduler's ``TaskService`` and ``AdminService``.

    Use it as ``async with AsyncClient("127.0.0.1:50051", client_id="billing") as client:``.
    The channel is opened on entry (or on the first call) and closed on exit; a closed client
    opens a new channel if it is used again.

    Security: ``tls=True`` (the system's trusted roots) or a :class:`TlsConfig` (a CA file,
    a client certificate for mutual TLS) makes the channel TLS; ``token`` is sent on every
    call as ``authorization: Bearer <token>`` — as call credentials over TLS, as plain
    metadata without TLS (loopback development only: anyone on the path can read it). With
    authentication on, the scheduler records the token's principal as the ``client`` of
    created tasks and ignores ``client_id``.

    Every unary call carries a deadline of ``timeout`` seconds (per attempt) and is retried
    with exponential backoff and jitter when, and only when, it fails with ``UNAVAILABLE``:
    ``retries`` is the number of retries or a whole :class:`RetryPolicy`. Streams (the
    watches) are not retried, except inside :meth:`wait_for_task`, whose watch starts from
    the task's current state and so can be opened again safely.

    A note on ``create_task`` and retries: ``UNAVAILABLE`` can arrive after the scheduler
    committed the task (the connection broke before the answer), so a retried create without
    ``idempotency_key`` may create the task twice. Pass an ``idempotency_key`` whenever a
    duplicate would matter; the scheduler then answers a repeat with the first task.
    """

    def __init__(
        self,
        target: str = DEFAULT_SCHEDULER_ADDRESS,
        *,
        client_id: str | None = None,
        timeout: float = 10.0,
        retries: int | RetryPolicy = 3,
        metadata: Metadata = (),
        token: str | None = None,
        tls: TlsConfig | bool | None = None,
    ) -> None:
        self._target = target
        self._tls = TlsConfig() if tls is True else tls or None
        self._token = token or None
        self._client_id = client_id
        self._timeout = timeout
        self._retry = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries)
        # The scheduler records the caller's identity as each created task's `client`.
        identity = ((CLIENT_METADATA_KEY, client_id),) if client_id else ()
        self._metadata: tuple[tuple[str, str], ...] = (
            *metadata,
            *identity,
            *_channel.call_metadata(self._token, self._tls),
        )
        self._channel: grpc.aio.Channel | None = None
        self._task_stub: TaskServiceAsyncStub | None = None
        self._admin_stub: AdminServiceAsyncStub | None = None
        # Seams for tests of the waiting logic; not part of the public API.
        self._sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
        self._rng: Callable[[], float] = random.random

    @property
    def target(self) -> str:
        return self._target

    @property
    def client_id(self) -> str | None:
        return self._client_id

    @property
    def tls(self) -> TlsConfig | None:
        return self._tls

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target!r}, client_id={self._client_id!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the channel; calls in flight are cancelled. Safe to call twice."""
        channel, self._channel = self._channel, None
        self._task_stub = self._admin_stub = None
        if channel is not None:
            await channel.close()

    def _open(self) -> None:
        # grpc.aio binds a channel to the running event loop, hence not in __init__.
        if self._channel is None:
            channel = _channel.open_channel(self._target, tls=self._tls, token=self._token)
            # With types-grpcio installed the stubs' overloads answer the async stub types;
            # without it grpc is untyped and mypy picks the blocking overload, hence the
            # ignore that tolerates being unused.
            task_stub = task_service_pb2_grpc.TaskServiceStub(channel)
            admin_stub = admin_service_pb2_grpc.AdminServiceStub(channel)
            self._task_stub = task_stub  # type: ignore[assignment,unused-ignore]
            self._admin_stub = admin_stub  # type: ignore[assignment,unused-ignore]
            self._channel = channel

    @property
    def _tasks(self) -> TaskServiceAsyncStub:
        self._open()
        assert self._task_stub is not None
        return self._task_stub

    @property
    def _admin(self) -> AdminServiceAsyncStub:
        self._open()
        assert self._admin_stub is not None
        return self._admin_stub

    # -- calling -------------------------------------------------------------------------------

    async def _unary(self, method: Any, request: _message.Message, *, traced: bool = False) -> Any:
        """One unary call with deadline, metadata, typed errors and retries on UNAVAILABLE.

        ``method`` is a stub's multi-callable; grpc ships no type hints, so callers annotate
        the result with the response type the contract names. ``traced`` calls carry the
        caller's active OpenTelemetry span as W3C trace context, for the scheduler's spans
        (and the worker's, through the lease) to join the caller's trace.
        """
        metadata = self._metadata
        if traced and (trace_context := outgoing_trace_metadata()):
            metadata = (*metadata, *trace_context)

        async def attempt() -> Any:
            with translated_errors():
                return await method(request, timeout=self._timeout, metadata=metadata)

        return await call_with_retry(attempt, self._retry, sleep=self._sleep, rng=self._rng)

    async def _stream(
        self, method: Callable[[TaskServiceAsyncStub], Any], request: _message.Message
    ) -> AsyncIterator[task_service_pb2.TaskEvent]:
        """The events of a server stream, with typed errors; no deadline, no retries.

        ``method`` picks the stub's multi-callable only once iteration starts, so that the
        channel is opened on the loop that iterates (the blocking client relies on it).
        """
        call = method(self._tasks)(request, metadata=self._metadata)
        try:
            with translated_errors():
                async for event in call:
                    yield event
        finally:
            # Leaving the loop early must end the call, not leave it to the garbage collector.
            call.cancel()

    # -- TaskService ---------------------------------------------------------------------------

    async def create_task(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        run_at: dt.datetime | None = None,
        delay: float | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        backoff: Backoff | task_pb2.BackoffPolicy | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the task's per-attempt timeout, sent
        group: str = "",
        idempotency_key: str = "",
        cache: bool = False,
        cache_max_age: float | None = None,
        labels: Mapping[str, str] | None = None,
        on_failure: OnFailureLike | None = None,
        concurrency_key: str = "",
        key_max_running: int | None = None,
        key_max_per_second: float | None = None,
    ) -> task_pb2.Task:
        """Create a task of ``type`` and answer it as stored.

        ``run_at`` (timezone-aware) or ``delay`` (seconds from now) say when it may start;
        ``timeout`` is seconds per attempt; unset options take the scheduler's defaults.
        Without ``idempotency_key`` a create retried after ``UNAVAILABLE`` may run twice (see
        the class documentation).

        ``on_failure`` (``"block"``, the default, or ``"skip"``, or an ``OnFailure`` value)
        says whether the task's ``group`` waits for it once it is FAILED or moves on.
        Tasks sharing a ``concurrency_key`` run within the key's limits, across types;
        ``key_max_running`` and ``key_max_per_second`` set those limits (0: none) for this
        create on. Giving either sends both, the other as 0, since the limits are replaced
        as a whole; giving neither keeps the key's limits. Limits without a key raise
        ``ValueError`` before anything is sent.

        With ``cache``, a task identical to an earlier one (same type and payload) reuses
        that task's result, or joins it while it runs, instead of running (the answer says
        ``cached`` and ``cached_from``); ``cache_max_age`` seconds bounds the age of a reused
        result (any age by default) and requires ``cache``.
        """
        request = create_task_request(
            type,
            payload,
            run_at=run_at,
            delay=delay,
            priority=priority,
            max_attempts=max_attempts,
            backoff=backoff,
            timeout=timeout,
            group=group,
            idempotency_key=idempotency_key,
            cache=cache,
            cache_max_age=cache_max_age,
            labels=labels,
            on_failure=on_failure,
            concurrency_key=concurrency_key,
            key_max_running=key_max_running,
            key_max_per_second=key_max_per_second,
        )
        task: task_pb2.Task = await self._unary(self._tasks.CreateTask, request, traced=True)
        return task

    async def batch_create_tasks(
        self, tasks: Iterable[task_service_pb2.CreateTaskRequest | Mapping[str, Any]]
    ) -> task_service_pb2.BatchCreateTasksResponse:
        """Create many tasks in one transaction: all of them or, if one is invalid, none.

        Each item is a ``CreateTaskRequest`` or a dict of :meth:`create_task`'s keyword
        arguments (``{"type": "sum2", "payload": {"first": 1, "second": 2}}``).
        """
        request = task_service_pb2.BatchCreateTasksRequest(tasks=create_task_requests(tasks))
        response: task_service_pb2.BatchCreateTasksResponse = await self._unary(
            self._tasks.BatchCreateTasks, request, traced=True
        )
        return response

    async def get_task(self, task_id: str, /) -> task_pb2.Task:
        """One task, with its attempt history; ``NotFound`` if there is none."""
        task: task_pb2.Task = await self._unary(
            self._tasks.GetTask, task_service_pb2.GetTaskRequest(id=task_id)
        )
        return task

    async def explain_task(self, task_id: str, /) -> task_service_pb2.ExplainTaskResponse:
        """Why the task is not running now: a ``summary`` sentence, then ``reasons``, the most
        important first (each with a ``ReasonCode``, a message, and, when known, the task
        holding it back and the time the reason ends by itself), and ``tasks_ahead``."""
        response: task_service_pb2.ExplainTaskResponse = await self._unary(
            self._tasks.ExplainTask, task_service_pb2.ExplainTaskRequest(id=task_id)
        )
        return response

    async def list_tasks(
        self,
        *,
        states: Iterable[StateLike] | None = None,
        types: Iterable[str] | None = None,
        client: str = "",
        group: str = "",
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        order_by: str = "",
        view: task_pb2.TaskView.ValueType = task_pb2.TASK_VIEW_UNSPECIFIED,
    ) -> task_service_pb2.ListTasksResponse:
        """One page of the tasks matching every filter given (newest first by default).

        ``states`` take enum values or names (``"failed"``); ``page_size`` 0 means the
        scheduler's default. Follow ``next_page_token``, or use :meth:`iter_tasks`.
        """
        request = task_service_pb2.ListTasksRequest(
            **TaskFilter.build(states, types, client, group, labels).fields(),
            page_size=page_size,
            page_token=page_token,
            order_by=order_by,
            view=view,
        )
        response: task_service_pb2.ListTasksResponse = await self._unary(
            self._tasks.ListTasks, request
        )
        return response

    async def iter_tasks(
        self,
        *,
        states: Iterable[StateLike] | None = None,
        types: Iterable[str] | None = None,
        client: str = "",
        group: str = "",
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        order_by: str = "",
        view: task_pb2.TaskView.ValueType = task_pb2.TASK_VIEW_UNSPECIFIED,
    ) -> AsyncIterator[task_pb2.Task]:
        """Every matching task, fetching the pages one by one as the loop asks for them."""
        # Parse once, so that a bad state name fails before the first call.
        task_filter = TaskFilter.build(states, types, client, group, labels)
        page_token = ""
        while True:
            page = await self.list_tasks(
                **task_filter.fields(),
                page_size=page_size,
                page_token=page_token,
                order_by=order_by,
                view=view,
            )
            for task in page.tasks:
                yield task
            page_token = page.next_page_token
            if not page_token:
                return

    async def delete_task(self, task_id: str, /) -> None:
        """Remove a task; a running one is stopped on its worker first."""
        await self._unary(self._tasks.DeleteTask, task_service_pb2.DeleteTaskRequest(id=task_id))

    async def delete_tasks(
        self,
        *,
        states: Iterable[StateLike] | None = None,
        types: Iterable[str] | None = None,
        client: str = "",
        group: str = "",
        labels: Mapping[str, str] | None = None,
        confirm_all: bool = False,
    ) -> int:
        """Remove every task matching the filters; answer how many were removed.

        With no filter at all this would remove every task, so it then insists on
        ``confirm_all=True`` (``ValueError`` otherwise, before anything is sent).
        """
        task_filter = TaskFilter.build(states, types, client, group, labels)
        if task_filter.is_empty() and not confirm_all:
            raise ValueError("no filter given: pass confirm_all=True to delete every task")
        request = task_service_pb2.DeleteTasksRequest(
            **task_filter.fields(), confirm_all=confirm_all
        )
        response: task_service_pb2.DeleteTasksResponse = await self._unary(
            self._tasks.DeleteTasks, request
        )
        return int(response.deleted_count)

    async def cancel_task(self, task_id: str, /) -> task_pb2.Task:
        """Stop a task that has not finished; it stays, as CANCELLED."""
        task: task_pb2.Task = await self._unary(
            self._tasks.CancelTask, task_service_pb2.CancelTaskRequest(id=task_id)
        )
        return task

    async def retry_task(self, task_id: str, /) -> task_pb2.Task:
        """Put a FAILED or CANCELLED task back to PENDING with fresh attempts."""
        task: task_pb2.Task = await self._unary(
            self._tasks.RetryTask, task_service_pb2.RetryTaskRequest(id=task_id)
        )
        return task

    async def run_task(self, task_id: str, /) -> task_pb2.Task:
        """Make a SCHEDULED task (``run_at`` ahead, or backing off) due now.

        A task already due is answered as it is; a running or finished one raises
        ``FailedPrecondition``.
        """
        task: task_pb2.Task = await self._unary(
            self._tasks.RunTask, task_service_pb2.RunTaskRequest(id=task_id)
        )
        return task

    def watch_task(
        self,
        task_id: str,
        /,
        *,
        view: task_pb2.TaskView.ValueType = task_pb2.TASK_VIEW_UNSPECIFIED,
    ) -> AsyncIterator[task_service_pb2.TaskEvent]:
        """The task now, then each change to it; the stream ends after a terminal state."""
        request = task_service_pb2.WatchTaskRequest(id=task_id, view=view)
        return self._stream(lambda stub: stub.WatchTask, request)

    def watch_tasks(
        self,
        *,
        states: Iterable[StateLike] | None = None,
        types: Iterable[str] | None = None,
        client: str = "",
        group: str = "",
        labels: Mapping[str, str] | None = None,
        since_revision: int = 0,
        view: task_pb2.TaskView.ValueType = task_pb2.TASK_VIEW_UNSPECIFIED,
    ) -> AsyncIterator[task_service_pb2.TaskEvent]:
        """Changes to matching tasks after ``since_revision`` (0: from now on), until closed.

        List first and watch from the list's ``revision`` to miss nothing in between.
        """
        request = task_service_pb2.WatchTasksRequest(
            **TaskFilter.build(states, types, client, group, labels).fields(),
            since_revision=since_revision,
            view=view,
        )
        return self._stream(lambda stub: stub.WatchTasks, request)

    async def wait_for_task(
        self,
        task_id: str,
        /,
        # Mirrors the blocking Client, where callers have no asyncio.timeout to wrap it in.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> task_pb2.Task:
        """The task once it is SUCCEEDED, FAILED or CANCELLED (check ``state``).

        Waits on a watch, not by polling. ``TimeoutError`` after ``timeout`` seconds (never,
        by default); ``NotFound`` if the task does not exist or is deleted meanwhile. A
        watch broken by ``UNAVAILABLE`` is opened again under the retry policy.
        """
        async with asyncio.timeout(timeout):
            retry_number = 0
            while True:
                try:
                    async with _closing(self.watch_task(task_id)) as events:
                        async for event in events:
                            retry_number = 0
                            if event.type == task_service_pb2.TASK_EVENT_TYPE_DELETED:
                                raise NotFound(f"task {task_id} was deleted")
                            if event.task.state in TERMINAL_STATES:
                                return event.task
                except Unavailable as error:
                    if not self._retry.should_retry(error, retry_number):
                        raise
                    await self._sleep(self._retry.delay(retry_number, self._rng))
                    retry_number += 1
                    continue
                # The stream ended without a terminal event; the task may still have finished.
                task = await self.get_task(task_id)
                if task.state in TERMINAL_STATES:
                    return task
                raise WatchEnded(
                    f"the watch of task {task_id} ended while it was {state_name(task.state)}"
                )

    # -- AdminService --------------------------------------------------------------------------

    async def list_task_types(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> admin_service_pb2.ListTaskTypesResponse:
        """One page of the task types the scheduler knows, with state and counts."""
        request = admin_service_pb2.ListTaskTypesRequest(page_size=page_size, page_token=page_token)
        response: admin_service_pb2.ListTaskTypesResponse = await self._unary(
            self._admin.ListTaskTypes, request
        )
        return response

    async def pause_task_type(self, type: str, /) -> admin_service_pb2.TaskType:
        """Stop leasing tasks of ``type`` (running ones finish); survives restarts."""
        task_type: admin_service_pb2.TaskType = await self._unary(
            self._admin.PauseTaskType, admin_service_pb2.PauseTaskTypeRequest(type=type)
        )
        return task_type

    async def resume_task_type(self, type: str, /) -> admin_service_pb2.TaskType:
        """Lease tasks of ``type`` again."""
        task_type: admin_service_pb2.TaskType = await self._unary(
            self._admin.ResumeTaskType, admin_service_pb2.ResumeTaskTypeRequest(type=type)
        )
        return task_type

    async def set_task_type_limits(
        self, type: str, /, *, max_running: int = 0, max_per_second: float = 0.0
    ) -> admin_service_pb2.TaskType:
        """Limit how many tasks of ``type`` run at once and how many start per second, across
        every scheduler sharing the database; 0 removes a limit.

        Both limits are set: one not given is removed. Below 1, ``max_per_second`` spaces the
        starts (0.1: one start every 10 s).
        """
        request = admin_service_pb2.SetTaskTypeLimitsRequest(
            type=type, limits=concurrency_limits(max_running, max_per_second)
        )
        task_type: admin_service_pb2.TaskType = await self._unary(
            self._admin.SetTaskTypeLimits, request
        )
        return task_type

    async def create_schedule(
        self,
        cron: str,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        time_zone: str = "UTC",
        schedule_id: str = "",
        catch_up: CatchUpLike = "latest",
        priority: int = 0,
        max_attempts: int | None = None,
        backoff: Backoff | task_pb2.BackoffPolicy | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the tasks' per-attempt timeout, sent
        group: str = "",
        cache: bool = False,
        cache_max_age: float | None = None,
        labels: Mapping[str, str] | None = None,
        on_failure: OnFailureLike | None = None,
        concurrency_key: str = "",
        key_max_running: int | None = None,
        key_max_per_second: float | None = None,
    ) -> admin_service_pb2.Schedule:
        """A recurring schedule: each slot of ``cron`` in ``time_zone`` creates one task of
        ``type`` (exactly once across every scheduler process), due at the slot's time.

        ``cron`` has five fields (minute hour day month weekday) or six with seconds last.
        ``schedule_id`` names the schedule (``AlreadyExists`` if taken; the scheduler makes
        one when empty). ``catch_up`` says what to do with slots missed while no scheduler
        ran or the schedule was paused: ``"latest"`` fires once for the most recent,
        ``"skip"`` fires none, ``"all"`` fires each. The task keywords are those of
        :meth:`create_task` and make the template every slot's task is created from.
        """
        template = create_task_request(
            type,
            payload,
            priority=priority,
            max_attempts=max_attempts,
            backoff=backoff,
            timeout=timeout,
            group=group,
            cache=cache,
            cache_max_age=cache_max_age,
            labels=labels,
            on_failure=on_failure,
            concurrency_key=concurrency_key,
            key_max_running=key_max_running,
            key_max_per_second=key_max_per_second,
        )
        request = create_schedule_request(
            cron, template, time_zone=time_zone, schedule_id=schedule_id, catch_up=catch_up
        )
        schedule: admin_service_pb2.Schedule = await self._unary(
            self._admin.CreateSchedule, request
        )
        return schedule

    async def get_schedule(self, schedule_id: str, /) -> admin_service_pb2.Schedule:
        """One schedule; ``NotFound`` if there is none."""
        schedule: admin_service_pb2.Schedule = await self._unary(
            self._admin.GetSchedule, admin_service_pb2.GetScheduleRequest(id=schedule_id)
        )
        return schedule

    async def list_schedules(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> admin_service_pb2.ListSchedulesResponse:
        """One page of schedules; follow ``next_page_token``, or use :meth:`iter_schedules`."""
        request = admin_service_pb2.ListSchedulesRequest(page_size=page_size, page_token=page_token)
        response: admin_service_pb2.ListSchedulesResponse = await self._unary(
            self._admin.ListSchedules, request
        )
        return response

    async def iter_schedules(
        self, *, page_size: int = 0
    ) -> AsyncIterator[admin_service_pb2.Schedule]:
        """Every schedule, fetching the pages one by one as the loop asks for them."""
        page_token = ""
        while True:
            page = await self.list_schedules(page_size=page_size, page_token=page_token)
            for schedule in page.schedules:
                yield schedule
            page_token = page.next_page_token
            if not page_token:
                return

    async def delete_schedule(self, schedule_id: str, /) -> None:
        """Remove a schedule; the tasks it created stay."""
        request = admin_service_pb2.DeleteScheduleRequest(id=schedule_id)
        _: empty_pb2.Empty = await self._unary(self._admin.DeleteSchedule, request)

    async def pause_schedule(self, schedule_id: str, /) -> admin_service_pb2.Schedule:
        """Stop firing; slots passing meanwhile are handled by ``catch_up`` on resume."""
        schedule: admin_service_pb2.Schedule = await self._unary(
            self._admin.PauseSchedule, admin_service_pb2.PauseScheduleRequest(id=schedule_id)
        )
        return schedule

    async def resume_schedule(self, schedule_id: str, /) -> admin_service_pb2.Schedule:
        """Fire again from the next slot (and the missed ones, as ``catch_up`` says)."""
        schedule: admin_service_pb2.Schedule = await self._unary(
            self._admin.ResumeSchedule, admin_service_pb2.ResumeScheduleRequest(id=schedule_id)
        )
        return schedule

    async def list_workers(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> admin_service_pb2.ListWorkersResponse:
        """One page of the workers connected now, to any scheduler sharing the database."""
        request = admin_service_pb2.ListWorkersRequest(page_size=page_size, page_token=page_token)
        response: admin_service_pb2.ListWorkersResponse = await self._unary(
            self._admin.ListWorkers, request
        )
        return response

    async def get_stats(self) -> admin_service_pb2.GetStatsResponse:
        """Counts per state and type, retries, the dead-letter count, throughput."""
        response: admin_service_pb2.GetStatsResponse = await self._unary(
            self._admin.GetStats, admin_service_pb2.GetStatsRequest()
        )
        return response
