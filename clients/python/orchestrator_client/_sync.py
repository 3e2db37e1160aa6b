"""The blocking client: :class:`AsyncClient` driven on an event loop in a private thread.

Why a thread rather than ``asyncio.run`` per call: a ``grpc.aio`` channel belongs to the loop
that made it, so a loop per call would reconnect on every call. One long-lived loop keeps the
channel (and its HTTP/2 connection) across calls, and works even when the caller's thread
already runs a loop of its own (a notebook, a web framework), where ``asyncio.run`` refuses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2

from ._client import AsyncClient, Metadata
from ._requests import Backoff, CatchUpLike, OnFailureLike
from ._retry import RetryPolicy
from ._states import StateLike
from .channel import TlsConfig
from .protocol import DEFAULT_SCHEDULER_ADDRESS

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and block until it is done.

        If the caller is interrupted (Ctrl-C), the coroutine is cancelled rather than left
        running in the background. It runs in a copy of the caller's context (the loop's
        ``call_soon_threadsafe`` takes one), so the caller's active trace span goes along
        with a create (tests/e2e/test_tracing.py holds it to that).
        """
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="orchestrator-client-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @property
    def running(self) -> bool:
        return self._loop is not None

    def stop(self) -> None:
        """Stop the loop and wait for its thread; the next :meth:`run` starts a new one."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            # On the loop's own thread: the caller's thread may be running a loop of its own.
            asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()


async def _anext(iterator: AsyncIterator[T]) -> T:
    # run_coroutine_threadsafe wants a coroutine; anext() answers a bare awaitable.
    return await anext(iterator)


class Client:
    """The blocking twin of :class:`AsyncClient`, with the same methods and arguments.

    Use it as ``with Client("127.0.0.1:50051", client_id="billing") as client:``. Calls may
    come from any thread; they all run on the client's own event loop. Iterating methods
    (``iter_tasks``, ``iter_schedules``, ``watch_task``, ``watch_tasks``) return ordinary
    iterators; close them
    (or leave the ``for`` loop) to end the underlying call.
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
        self._async = AsyncClient(
            target,
            client_id=client_id,
            timeout=timeout,
            retries=retries,
            metadata=metadata,
            token=token,
            tls=tls,
        )
        self._loop = _LoopThread()

    @property
    def target(self) -> str:
        return self._async.target

    @property
    def client_id(self) -> str | None:
        return self._async.client_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r}, client_id={self.client_id!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and stop the loop thread. Safe to call twice."""
        if self._loop.running:
            try:
                self._loop.run(self._async.aclose())
            finally:
                self._loop.stop()

    def _iterate(self, iterator: AsyncIterator[T]) -> Generator[T, None, None]:
        """A blocking iterator over an async one, each step run on the client's loop."""
        try:
            while True:
                try:
                    item = self._loop.run(_anext(iterator))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None and self._loop.running:
                self._loop.run(aclose())

    # -- TaskService ---------------------------------------------------------------------------

    def create_task(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        run_at: dt.datetime | None = None,
        delay: float | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        backoff: Backoff | task_pb2.BackoffPolicy | None = None,
        timeout: float | None = None,
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
        """See :meth:`AsyncClient.create_task`."""
        return self._loop.run(
            self._async.create_task(
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
        )

    def batch_create_tasks(
        self, tasks: Iterable[task_service_pb2.CreateTaskRequest | Mapping[str, Any]]
    ) -> task_service_pb2.BatchCreateTasksResponse:
        """See :meth:`AsyncClient.batch_create_tasks`."""
        return self._loop.run(self._async.batch_create_tasks(list(tasks)))

    def get_task(self, task_id: str, /) -> task_pb2.Task:
        """See :meth:`AsyncClient.get_task`."""
        return self._loop.run(self._async.get_task(task_id))

    def explain_task(self, task_id: str, /) -> task_service_pb2.ExplainTaskResponse:
        """See :meth:`AsyncClient.explain_task`."""
        return self._loop.run(self._async.explain_task(task_id))

    def list_tasks(
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
        """See :meth:`AsyncClient.list_tasks`."""
        return self._loop.run(
            self._async.list_tasks(
                states=states,
                types=types,
                client=client,
                group=group,
                labels=labels,
                page_size=page_size,
                page_token=page_token,
                order_by=order_by,
                view=view,
            )
        )

    def iter_tasks(
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
    ) -> Generator[task_pb2.Task, None, None]:
        """See :meth:`AsyncClient.iter_tasks`."""
        return self._iterate(
            self._async.iter_tasks(
                states=states,
                types=types,
                client=client,
                group=group,
                labels=labels,
                page_size=page_size,
                order_by=order_by,
                view=view,
            )
        )

    def delete_task(self, task_id: str, /) -> None:
        """See :meth:`AsyncClient.delete_task`."""
        self._loop.run(self._async.delete_task(task_id))

    def delete_tasks(
        self,
        *,
        states: Iterable[StateLike] | None = None,
        types: Iterable[str] | None = None,
        client: str = "",
        group: str = "",
        labels: Mapping[str, str] | None = None,
        confirm_all: bool = False,
    ) -> int:
        """See :meth:`AsyncClient.delete_tasks`."""
        return self._loop.run(
            self._async.delete_tasks(
                states=states,
                types=types,
                client=client,
                group=group,
                labels=labels,
                confirm_all=confirm_all,
            )
        )

    def cancel_task(self, task_id: str, /) -> task_pb2.Task:
        """See :meth:`AsyncClient.cancel_task`."""
        return self._loop.run(self._async.cancel_task(task_id))

    def retry_task(self, task_id: str, /) -> task_pb2.Task:
        """See :meth:`AsyncClient.retry_task`."""
        return self._loop.run(self._async.retry_task(task_id))

    def run_task(self, task_id: str, /) -> task_pb2.Task:
        """See :meth:`AsyncClient.run_task`."""
        return self._loop.run(self._async.run_task(task_id))

    def watch_task(
        self,
        task_id: str,
        /,
        *,
        view: task_pb2.TaskView.ValueType = task_pb2.TASK_VIEW_UNSPECIFIED,
    ) -> Generator[task_service_pb2.TaskEvent, None, None]:
        """See :meth:`AsyncClient.watch_task`."""
        return self._iterate(self._async.watch_task(task_id, view=view))

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
    ) -> Generator[task_service_pb2.TaskEvent, None, None]:
        """See :meth:`AsyncClient.watch_tasks`."""
        return self._iterate(
            self._async.watch_tasks(
                states=states,
                types=types,
                client=client,
                group=group,
                labels=labels,
                since_revision=since_revision,
                view=view,
            )
        )

    def wait_for_task(self, task_id: str, /, timeout: float | None = None) -> task_pb2.Task:
        """See :meth:`AsyncClient.wait_for_task`."""
        return self._loop.run(self._async.wait_for_task(task_id, timeout=timeout))

    # -- AdminService --------------------------------------------------------------------------

    def list_task_types(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> admin_service_pb2.ListTaskTypesResponse:
        """See :meth:`AsyncClient.list_task_types`."""
        return self._loop.run(
            self._async.list_task_types(page_size=page_size, page_token=page_token)
        )

    def pause_task_type(self, type: str, /) -> admin_service_pb2.TaskType:
        """See :meth:`AsyncClient.pause_task_type`."""
        return self._loop.run(self._async.pause_task_type(type))

    def resume_task_type(self, type: str, /) -> admin_service_pb2.TaskType:
        """See :meth:`AsyncClient.resume_task_type`."""
        return self._loop.run(self._async.resume_task_type(type))

    def set_task_type_limits(
        self, type: str, /, *, max_running: int = 0, max_per_second: float = 0.0
    ) -> admin_service_pb2.TaskType:
        """See :meth:`AsyncClient.set_task_type_limits`."""
        return self._loop.run(
            self._async.set_task_type_limits(
                type, max_running=max_running, max_per_second=max_per_second
            )
        )

    def create_schedule(
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
        timeout: float | None = None,
        group: str = "",
        cache: bool = False,
        cache_max_age: float | None = None,
        labels: Mapping[str, str] | None = None,
        on_failure: OnFailureLike | None = None,
        concurrency_key: str = "",
        key_max_running: int | None = None,
        key_max_per_second: float | None = None,
    ) -> admin_service_pb2.Schedule:
        """See :meth:`AsyncClient.create_schedule`."""
        return self._loop.run(
            self._async.create_schedule(
                cron,
                type,
                payload,
                time_zone=time_zone,
                schedule_id=schedule_id,
                catch_up=catch_up,
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
        )

    def get_schedule(self, schedule_id: str, /) -> admin_service_pb2.Schedule:
        """See :meth:`AsyncClient.get_schedule`."""
        return self._loop.run(self._async.get_schedule(schedule_id))

    def list_schedules(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> admin_service_pb2.ListSchedulesResponse:
        """See :meth:`AsyncClient.list_schedules`."""
        return self._loop.run(
            self._async.list_schedules(page_size=page_size, page_token=page_token)
        )

    def iter_schedules(
        self, *, page_size: int = 0
    ) -> Generator[admin_service_pb2.Schedule, None, None]:
        """See :meth:`AsyncClient.iter_schedules`."""
        return self._iterate(self._async.iter_schedules(page_size=page_size))

    def delete_schedule(self, schedule_id: str, /) -> None:
        """See :meth:`AsyncClient.delete_schedule`."""
        self._loop.run(self._async.delete_schedule(schedule_id))

    def pause_schedule(self, schedule_id: str, /) -> admin_service_pb2.Schedule:
        """See :meth:`AsyncClient.pause_schedule`."""
        return self._loop.run(self._async.pause_schedule(schedule_id))

    def resume_schedule(self, schedule_id: str, /) -> admin_service_pb2.Schedule:
        """See :meth:`AsyncClient.resume_schedule`."""
        return self._loop.run(self._async.resume_schedule(schedule_id))

    def list_workers(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> admin_service_pb2.ListWorkersResponse:
        """See :meth:`AsyncClient.list_workers`."""
        return self._loop.run(self._async.list_workers(page_size=page_size, page_token=page_token))

    def get_stats(self) -> admin_service_pb2.GetStatsResponse:
        """See :meth:`AsyncClient.get_stats`."""
        return self._loop.run(self._async.get_stats())
