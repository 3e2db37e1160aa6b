"""Running one lease: pick the handler, run it where its kind says, turn the outcome into a
``TaskResult`` (see :mod:`worker_service.results`).

Two moments matter and they are kept apart:

* the **outcome** is known — the handler returned or raised, the lease's ``timeout``
  passed, the scheduler cancelled, or the worker returns the task while draining;
  :meth:`TaskRunner.execute` returns the result then;
* the **work ends** — :attr:`Job.ended` is set, and only then is the slot free again.

For an async handler the two are a loop iteration apart (it is cancelled). A thread or a
process cannot be killed: at the deadline the worker reports TIMED_OUT (the scheduler is
about to take the task back anyway) but the slot stays busy until the function really
returns. Granting the slot back earlier would let the scheduler start another task while
the stuck one still holds a thread or a CPU: the worker would run more than ``--slots`` at
once, the one thing credit-based flow control promises never happens.

``TaskResult.started_at`` is the wall clock right before the handler is invoked: by the
async task's first step, in the handler's thread, or in the pool's child (which sends its
start back with the outcome, see :func:`~worker_service.pool_child.call_timed`). See
:attr:`Job.started_at` for the one case where it is approximate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import enum
import json
import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator_client.convert import seconds_from_duration

from . import results
from .context import HandlerSettings, ProgressSink, TaskContext
from .errors import TaskFailed
from .pool_child import (
    STARTED_AT_ATTRIBUTE,
    call_timed,
    ignore_shutdown_signals,
    signals_blocked,
)
from .registry import HandlerKind, HandlerRegistry, RegisteredHandler
from .tracing import RunTracing

log = logging.getLogger(__name__)

#: How long a stopped async handler may take to unwind before the outcome is reported.
ASYNC_UNWIND_SECONDS = 1.0


class StopReason(enum.Enum):
    """Why the worker stops an attempt before its handler is done."""

    #: The scheduler sent ``cancel``: report CANCELLED.
    CANCELLED = "cancelled"
    #: The worker is draining and the grace ran out: report RETURNED.
    RETURNED = "returned"
    #: The stream broke: the scheduler already took the lease back; the result is dropped.
    LOST = "lost"


@dataclass(eq=False)
class Job:
    """One lease on this worker, from its arrival until its work has ended."""

    lease: pb.Lease
    ctx: TaskContext
    #: Monotonic time of arrival; the lease's ``timeout`` counts from here.
    started: float = field(default_factory=time.monotonic)
    #: Set when the handler's work has really ended (see the module docstring).
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    #: Wall clock (``time.time()``) right before the handler was invoked; ``None`` until it
    #: is. A thread handler's thread sets it; a process handler's child reports it.
    handler_started: float | None = None
    #: Process handlers: the pool's future, and when the job was handed to the pool.
    pool_future: concurrent.futures.Future[Any] | None = None
    pool_submitted: float | None = None
    _stop: asyncio.Future[tuple[StopReason, str]] | None = None

    @property
    def lease_id(self) -> str:
        return self.lease.lease_id

    @property
    def stop_requested(self) -> asyncio.Future[tuple[StopReason, str]]:
        if self._stop is None:
            self._stop = asyncio.get_running_loop().create_future()
        return self._stop

    def request_stop(self, reason: StopReason, text: str) -> None:
        """Stop the attempt early; the first reason wins."""
        if not self.stop_requested.done():
            self.stop_requested.set_result((reason, text))
        self.ctx.cancelled.set()

    def mark_started(self) -> None:
        """The handler is about to be invoked (called from any thread)."""
        self.handler_started = time.time()

    @property
    def started_at(self) -> float | None:
        """When the handler started (seconds since the epoch); ``None`` if it never did.

        The one approximation: a process handler stopped before its child answered (timed
        out, cancelled, returned) reports when it was handed to the pool, unless the pool
        had not taken it yet (then it never runs, and this is ``None``)."""
        if self.handler_started is not None:
            return self.handler_started
        pool_future = self.pool_future
        if pool_future is not None and not pool_future.cancelled():
            return self.pool_submitted
        return None

    @property
    def stopped_for(self) -> StopReason | None:
        stop = self._stop
        return stop.result()[0] if stop is not None and stop.done() else None


def lease_timeout(lease: pb.Lease) -> float | None:
    """The lease's ``timeout`` in seconds; ``None`` when unset or zero (no limit)."""
    if not lease.HasField("timeout"):
        return None
    seconds = seconds_from_duration(lease.timeout)
    return seconds if seconds > 0 else None


def decode_payload(data: bytes) -> dict[str, Any]:
    """The lease's payload; empty means ``{}``; anything but a JSON object is refused."""
    if not data:
        return {}
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValueError(f"the payload must be a JSON object, got {type(payload).__name__}")
    return payload


class Executors:
    """Where sync handlers run: a thread pool, and a process pool spawned on first use.

    The thread pool is the worker's own, sized to ``slots``, rather than asyncio's default
    one (``min(32, cpus + 4)`` threads): a thread handler never waits for a thread while its
    lease's clock runs, and ``asyncio.run`` does not block at exit on a stuck handler.

    The process pool uses the *spawn* start method: forking a process that runs gRPC
    threads can deadlock the child. A pool broken by a dead child is replaced.
    """

    def __init__(self, *, threads: int, processes: int) -> None:
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="handler"
        )
        self._process_count = processes
        self._processes: concurrent.futures.ProcessPoolExecutor | None = None

    def submit_thread(self, func: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        # Copy the context so that contextvars (log fields) follow the handler into the thread.
        return self._threads.submit(contextvars.copy_context().run, func, *args)

    def submit_process(
        self, func: Callable[..., Any], *args: Any
    ) -> concurrent.futures.Future[Any]:
        pool = self._process_pool()
        try:
            with signals_blocked():  # submit() may start a child; see pool_child
                return pool.submit(func, *args)
        except BrokenProcessPool:
            log.warning("the process pool broke (a child died); starting a new one")
            if self._processes is pool:
                self._processes = None
            pool.shutdown(wait=False, cancel_futures=True)
            with signals_blocked():
                return self._process_pool().submit(func, *args)

    def _process_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._processes is None:
            self._processes = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._process_count,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=ignore_shutdown_signals,
            )
        return self._processes

    def shutdown(self, *, wait: bool) -> None:
        """Stop both pools. Without ``wait``, kill the pool's processes: a CPU job still
        running at exit would otherwise hold the interpreter until it ends (and the
        children ignore SIGTERM, see :mod:`worker_service.pool_child`)."""
        self._threads.shutdown(wait=wait, cancel_futures=True)
        pool, self._processes = self._processes, None
        if pool is None:
            return
        if not wait:
            # No public way to end running jobs before Python 3.14 (terminate_workers()).
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
        pool.shutdown(wait=wait, cancel_futures=True)


class TaskRunner:
    """Runs leases with the handlers of a registry."""

    def __init__(
        self,
        registry: HandlerRegistry,
        executors: Executors,
        settings: HandlerSettings,
        worker_id: str,
        tracing: RunTracing | None = None,
    ) -> None:
        self._registry = registry
        self._executors = executors
        self._settings = settings
        self._worker_id = worker_id
        #: None when tracing is off: no span is made.
        self._tracing = tracing

    def job(self, lease: pb.Lease, progress_sink: ProgressSink | None = None) -> Job:
        """A job for ``lease``; its handler's progress reports go to ``progress_sink``."""
        ctx = TaskContext(
            task_id=lease.task_id,
            type=lease.type,
            attempt=lease.attempt,
            max_attempts=lease.max_attempts,
            lease_id=lease.lease_id,
            worker_id=self._worker_id,
            settings=self._settings,
            labels=dict(lease.labels),
            progress_sink=progress_sink,
        )
        return Job(lease=lease, ctx=ctx)

    async def execute(self, job: Job) -> pb.TaskResult:
        """Run ``job`` until its outcome is known; :attr:`Job.ended` tells when the work ended."""
        if self._tracing is None:
            result = await self._execute(job)
        else:
            with self._tracing.run_span(job.lease) as span:
                result = await self._execute(job)
                self._tracing.finish(span, result)
        started_at = job.started_at
        if started_at is not None:
            results.started_at(result, started_at)
        outcome = pb.ResultOutcome.Name(result.outcome).removeprefix("RESULT_OUTCOME_")
        fields = {"outcome": outcome, "seconds": round(time.monotonic() - job.started, 3)}
        if result.error:
            job.ctx.log.info("task %s: %s", outcome.lower(), result.error, extra=fields)
        else:
            job.ctx.log.info("task %s", outcome.lower(), extra=fields)
        return result

    async def _execute(self, job: Job) -> pb.TaskResult:
        lease = job.lease
        registered = self._registry.get(lease.type)
        if registered is None:
            job.ended.set()
            return results.failed(
                lease,
                f"no handler for task type {lease.type!r} on worker {self._worker_id} "
                f"(it serves {', '.join(self._registry.names())})",
                retryable=False,
            )
        try:
            payload = decode_payload(lease.payload_json)
        except ValueError as exc:
            job.ended.set()
            return results.failed(lease, str(exc), retryable=False)
        try:
            work = self._start(registered, payload, job)
        except Exception as exc:  # e.g. the pools are shut down: let another worker try
            job.ended.set()
            return results.from_exception(lease, exc)
        timeout = lease_timeout(lease)
        try:
            remaining = (
                None if timeout is None else max(0.0, job.started + timeout - time.monotonic())
            )
            await asyncio.wait(
                {work, job.stop_requested}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if work.done():
                return self._outcome(job, work)
            job.ctx.cancelled.set()
            work.cancel()
            if job.pool_future is not None:
                # At once rather than through `work`: a job the pool has not taken yet never
                # starts, and its result must say so (no started_at).
                job.pool_future.cancel()
            if registered.kind is HandlerKind.ASYNC:
                # Let it unwind (its finally blocks run), so that the result and the freed
                # slot usually leave together in one message.
                await asyncio.wait({work}, timeout=ASYNC_UNWIND_SECONDS)
            stop = job.stop_requested
            if not stop.done():  # nothing asked us to stop: the deadline passed
                return results.timed_out(lease, timeout or 0.0)
            reason, text = stop.result()
            if reason is StopReason.RETURNED:
                return results.returned(lease, text)
            if reason is StopReason.CANCELLED:
                return results.cancelled(lease, text)
            return results.returned(lease, text or "the stream to the scheduler broke")
        finally:
            if not work.done():
                job.ctx.cancelled.set()
                work.cancel()

    def _outcome(self, job: Job, work: asyncio.Future[Any]) -> pb.TaskResult:
        if work.cancelled():
            return results.failed(
                job.lease, "CancelledError: the handler was cancelled", retryable=True
            )
        exc = work.exception()
        if exc is None:
            return results.succeeded(job.lease, work.result())
        if not isinstance(exc, TaskFailed):
            job.ctx.log.warning("handler raised", exc_info=exc)
        return results.from_exception(job.lease, exc)

    def _start(
        self, registered: RegisteredHandler, payload: dict[str, Any], job: Job
    ) -> asyncio.Future[Any]:
        """Start the handler; :attr:`Job.ended` is set when it has really stopped."""
        name = f"handler {job.lease.type} {job.lease_id}"
        if registered.kind is HandlerKind.ASYNC:
            task = asyncio.create_task(_call_async(job, registered.func, payload), name=name)
            task.add_done_callback(lambda _: job.ended.set())
            return task
        if registered.kind is HandlerKind.THREAD:
            future = self._executors.submit_thread(_call_in_thread, job, registered.func, payload)
        else:
            job.pool_submitted = time.time()
            future = self._executors.submit_process(
                call_timed, registered.func, payload, job.ctx.info
            )
            job.pool_future = future
        loop = asyncio.get_running_loop()

        def ended(_: concurrent.futures.Future[Any]) -> None:
            # RuntimeError: the loop is closed, nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(job.ended.set)

        future.add_done_callback(ended)
        if registered.kind is HandlerKind.PROCESS:
            return asyncio.create_task(_child_answer(job, future), name=name)
        return asyncio.wrap_future(future)


async def _call_async(job: Job, func: Callable[..., Any], payload: dict[str, Any]) -> Any:
    job.mark_started()
    return await func(payload, job.ctx)


def _call_in_thread(job: Job, func: Callable[..., Any], payload: dict[str, Any]) -> Any:
    job.mark_started()
    return func(payload, job.ctx)


async def _child_answer(job: Job, future: concurrent.futures.Future[Any]) -> Any:
    """The handler's value from the pool's ``(start, value)``; the child's start (also on an
    exception it raised) becomes the job's."""
    try:
        started, value = await asyncio.wrap_future(future)
    except Exception as exc:
        started = getattr(exc, STARTED_AT_ATTRIBUTE, None)
        if isinstance(started, float):
            job.handler_started = started
        raise
    job.handler_started = started
    return value
