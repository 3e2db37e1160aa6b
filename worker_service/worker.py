"""The worker: connect to the scheduler, run what it leases, send results, stay connected.

Lifecycle (``run()``, idempotent ``stop()``):

1. wait until at least one slot is free (see below), open a channel, send ``hello`` whose
   ``slots`` is the first credit, wait for ``welcome``;
2. serve the connection: its reader, writer and heartbeat run as named side tasks next to
   a *drainer*; if any of them dies the whole connection is torn down and opened again —
   never a worker that is connected but no longer reads, writes or heartbeats;
3. drain on ``stop()`` (SIGTERM) or on the scheduler's ``drain``: send ``draining``, take no
   new leases (any still arriving are answered RETURNED unstarted), let running tasks finish
   within the grace, stop the rest as RETURNED, send everything, half-close, wait for the
   scheduler to end the stream. After ``stop()`` the worker exits; after a scheduler's
   ``drain`` it reconnects (to the next address of ``--scheduler``, or to the next
   scheduler behind the one address);
4. on a failed attempt or a broken stream, reconnect — to the next address of
   ``--scheduler`` when it lists several, with exponential backoff and jitter per full
   cycle through the list (see :mod:`worker_service.backoff`) — except when a scheduler
   refused the worker (FAILED_PRECONDITION and the like): retrying cannot help, so
   :class:`SchedulerRejected` ends ``run()``.

Slots and credit. ``busy`` counts tasks whose work has not ended; the worker never starts
a lease when ``busy == slots``. Credit goes back to the scheduler one per slot, only when
the work has really ended *and* its result was sent (a handler stuck in a thread past its
timeout keeps its slot, see :mod:`worker_service.runner`). ``hello.slots`` is therefore
``slots - busy`` at connect time; normally that is ``--slots``.

A broken stream: the scheduler has already taken every lease of that stream back (and will
lease them again), so the worker cancels those tasks and drops their results rather than
letting a second copy run on; the slots come back as the work actually stops.

Progress. What handlers report (:meth:`TaskContext.report_progress
<worker_service.context.TaskContext.report_progress>`) goes to the connection their lease
came on while the lease is held; once its result is queued, or the stream is gone, later
reports are dropped — progress never follows a result.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from typing import Any, TypeVar

import grpc

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator_client.channel import call_metadata, open_channel
from orchestrator_client.protocol import WORKER_PROTOCOL_VERSION

from . import results
from .backoff import Backoff, Failover
from .config import WorkerConfig
from .connection import Connection, StreamEnded
from .errors import SchedulerRejected
from .registry import HandlerRegistry
from .runner import Executors, Job, StopReason, TaskRunner
from .tracing import RunTracing

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A stream ended with one of these will end the same way next time: do not retry.
FATAL_CODES = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
#: How long to wait for the welcome, and for the scheduler to end a stream we half-closed.
WELCOME_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
#: After the connection ends, how long cancelled async handlers get to unwind.
UNWIND_TIMEOUT = 1.0


def worker_version() -> str:
    try:
        return metadata.version("task-orchestrator")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _describe(exc: BaseException) -> tuple[grpc.StatusCode | None, str]:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code(), f"{exc.code().name}: {exc.details()}"
    return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Worker:
    """Runs the handlers of ``registry`` for the scheduler named in ``config``."""

    def __init__(
        self,
        config: WorkerConfig,
        registry: HandlerRegistry,
        *,
        rng: Callable[[], float] = random.random,
        welcome_timeout: float = WELCOME_TIMEOUT,
        tracing: RunTracing | None = None,
    ) -> None:
        if not len(registry):
            raise ValueError("a worker needs at least one task type")
        self.config = config
        self.registry = registry
        self._welcome_timeout = welcome_timeout
        self._executors = Executors(threads=config.slots, processes=config.cpu_workers)
        self._runner = TaskRunner(
            registry, self._executors, config.handler_settings(), config.worker_id, tracing
        )
        self._failover = Failover(
            config.schedulers, Backoff(max_delay=config.reconnect_max_delay, rng=rng)
        )
        self._extra = {"worker_id": config.worker_id}
        # Leases of the current connection whose result is not sent yet ("held").
        self._jobs: dict[str, Job] = {}
        self._held_empty = asyncio.Event()
        self._held_empty.set()
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._slot_freed = asyncio.Event()
        self._connection: Connection | None = None
        self._draining = False
        self._drain_requested = asyncio.Event()
        self._drain_grace: float | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False
        #: Tasks still running in a thread or process when ``run()`` returned; they cannot be
        #: killed, so ``__main__`` exits the process hard rather than wait for them.
        self.abandoned = 0

    @property
    def busy(self) -> int:
        """Slots in use: tasks whose work has not ended yet."""
        return self._busy

    # Lifecycle.

    async def run(self) -> None:
        """Serve until :meth:`stop`; raises :class:`SchedulerRejected` if refused."""
        if self._running:
            raise RuntimeError("Worker.run() is already running")
        self._running = True
        try:
            while not self._stopping.is_set():
                address = self._failover.address
                try:
                    try:
                        await self._connect_and_serve(address)
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() in FATAL_CODES:
                            raise SchedulerRejected(_describe(exc)[1]) from exc
                        raise
                except SchedulerRejected as exc:
                    log.error(
                        "the scheduler at %s refused this worker, not retrying: %s",
                        address,
                        exc,
                        extra=self._extra,
                    )
                    raise
                except Exception as exc:
                    text = _describe(exc)[1]
                    # InvalidStateError: a write on a stream the scheduler already ended.
                    expected = isinstance(
                        exc,
                        grpc.aio.AioRpcError
                        | StreamEnded
                        | TimeoutError
                        | asyncio.InvalidStateError,
                    )
                    log.warning(
                        "connection to the scheduler at %s failed: %s",
                        address,
                        text,
                        extra=self._extra,
                        exc_info=None if expected else exc,
                    )
                if self._stopping.is_set():
                    break
                delay = self._failover.next_delay()
                log.info(
                    "reconnecting to the scheduler at %s in %.2fs",
                    self._failover.address,
                    delay,
                    extra=self._extra,
                )
                await self._until_stopped(asyncio.sleep(delay))
        finally:
            await self._shutdown()
            self._stopped.set()

    async def stop(self) -> None:
        """Drain and leave: no new work, running tasks get ``shutdown_grace`` to finish, the
        rest are returned. Safe to call many times, and before or after ``run()``."""
        if not self._stopping.is_set():
            log.info("stopping", extra=self._extra)
            self._stopping.set()
        if self._running:
            await self._stopped.wait()

    async def _until_stopped(self, awaitable: Awaitable[T]) -> T | None:
        """Await ``awaitable`` unless ``stop()`` comes first (then cancel it: ``None``)."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        return None if work.cancelled() else work.result()

    async def _shutdown(self) -> None:
        running = [task for task in self._job_tasks if not task.done()]
        if running:
            await asyncio.wait(running, timeout=UNWIND_TIMEOUT)
        stuck = [task for task in self._job_tasks if not task.done()]
        self.abandoned = len(stuck)
        for task in stuck:
            task.cancel()
        if stuck:
            log.warning(
                "%d task(s) still running in threads or processes are abandoned",
                len(stuck),
                extra=self._extra,
            )
        await asyncio.to_thread(self._executors.shutdown, wait=not stuck)
        log.info("stopped", extra=self._extra)

    # One connection.

    async def _connect_and_serve(self, address: str) -> None:
        if self._busy >= self.config.slots:
            log.warning(
                "all %d slots are held by tasks that cannot be stopped; waiting for one",
                self.config.slots,
                extra=self._extra,
            )
            if not await self._until_stopped(self._slot_available()):
                return
        log.debug("connecting to the scheduler at %s", address, extra=self._extra)
        config = self.config
        channel = open_channel(address, tls=config.tls, token=config.token or None)
        # A fresh channel per connection: a channel left in TRANSIENT_FAILURE waits out its
        # own (up to 2 minutes) backoff, which would override ours.
        try:
            connection = await self._until_stopped(
                Connection.open(
                    channel,
                    self._hello(),
                    self,
                    self._welcome_timeout,
                    metadata=call_metadata(config.token or None, config.tls),
                )
            )
            if connection is None:
                return
            self._failover.connected()
            welcome = connection.welcome
            log.info(
                "connected to scheduler %s at %s (session %s, heartbeat every %gs)",
                welcome.scheduler_id or "(unnamed)",
                address,
                welcome.session_id,
                connection.heartbeat_interval,
                extra=self._extra,
            )
            await self._serve(connection)
        finally:
            await channel.close()

    async def _slot_available(self) -> bool:
        while self._busy >= self.config.slots:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        return True

    def _hello(self) -> pb.WorkerHello:
        return pb.WorkerHello(
            protocol_version=WORKER_PROTOCOL_VERSION,
            worker_id=self.config.worker_id,
            task_types=self.registry.names(),
            slots=self.config.slots - self._busy,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            version=worker_version(),
        )

    async def _serve(self, connection: Connection) -> None:
        self._connection = connection
        self._draining = False
        self._drain_grace = None
        self._drain_requested.clear()
        connection.start()
        drainer = asyncio.create_task(self._drain_when_asked(connection), name="drainer")
        pending: set[asyncio.Task[None]] = {*connection.tasks, drainer}
        try:
            while not drainer.done():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is drainer:
                        continue
                    if task.cancelled():
                        raise StreamEnded(f"{task.get_name()} was cancelled")
                    error = task.exception()
                    if error is not None:
                        raise error
                    if not connection.closing:
                        raise StreamEnded(f"{task.get_name()} stopped")
            drainer.result()
        except BaseException as exc:
            status = await connection.status()
            self._lose(connection, _describe(exc)[1])
            if status is not None and status[0] in FATAL_CODES:
                code, details = status
                raise SchedulerRejected(f"{code.name}: {details}") from exc
            raise
        finally:
            drainer.cancel()
        connection.abort()  # the heartbeat timer; the stream itself has ended
        self._connection = None
        log.info("disconnected after draining", extra=self._extra)

    def _lose(self, connection: Connection, why: str) -> None:
        """The stream broke: its leases are gone; stop their tasks, drop their results."""
        connection.abort()
        self._connection = None
        jobs = list(self._jobs.values())
        self._jobs.clear()
        self._held_empty.set()
        for job in jobs:
            job.request_stop(StopReason.LOST, why)
        if jobs:
            log.warning(
                "stream lost: stopped %d running task(s); the scheduler has taken them back",
                len(jobs),
                extra=self._extra,
            )

    async def _drain_when_asked(self, connection: Connection) -> None:
        stop = asyncio.create_task(self._stopping.wait())
        drain = asyncio.create_task(self._drain_requested.wait())
        try:
            await asyncio.wait({stop, drain}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            drain.cancel()
        grace = self.config.shutdown_grace
        if self._drain_requested.is_set() and self._drain_grace is not None:
            grace = self._drain_grace
        self._draining = True
        connection.send_draining()
        log.info(
            "draining: %d task(s) running get %gs to finish",
            len(self._jobs),
            grace,
            extra=self._extra,
        )
        try:
            async with asyncio.timeout(grace):
                await self._held_empty.wait()
        except TimeoutError:
            reason = f"the worker is shutting down (its {grace:g}s grace ran out)"
            for job in list(self._jobs.values()):
                job.request_stop(StopReason.RETURNED, reason)
            await self._held_empty.wait()  # runners answer at once once asked to stop
        await connection.close_sending()
        if not await connection.wait_ended(CLOSE_TIMEOUT):
            log.warning("the scheduler did not end the stream; dropping it", extra=self._extra)

    # ConnectionHost: what the connection hands over.

    def on_leases(self, connection: Connection, leases: Sequence[pb.Lease]) -> None:
        for lease in leases:
            if self._draining:
                connection.send_result(results.returned(lease, "the worker is draining"))
            elif lease.lease_id in self._jobs:
                log.warning("duplicate lease ignored", extra=self._lease_extra(lease))
            elif self._busy >= self.config.slots:
                log.error(
                    "lease beyond the granted credit: returned unstarted",
                    extra=self._lease_extra(lease),
                )
                connection.send_result(
                    results.returned(lease, "no free slot: the scheduler exceeded the credit")
                )
            else:
                self._start(connection, lease)

    def on_cancel(self, lease_ids: Sequence[str], reason: str) -> None:
        for lease_id in lease_ids:
            job = self._jobs.get(lease_id)
            if job is None:
                log.debug(
                    "cancel for a lease not held", extra={**self._extra, "lease_id": lease_id}
                )
                continue
            job.request_stop(StopReason.CANCELLED, reason or "cancelled by the scheduler")

    def on_drain(self, connection: Connection, grace: float | None, reason: str) -> None:
        if connection is not self._connection:
            return
        log.info("the scheduler asks to drain: %s", reason or "(no reason)", extra=self._extra)
        self._drain_grace = grace if grace is not None and grace > 0 else None
        self._drain_requested.set()

    def held_lease_ids(self) -> list[str]:
        return list(self._jobs)

    # Jobs and slots.

    def _lease_extra(self, lease: pb.Lease) -> dict[str, Any]:
        return {**self._extra, "task_id": lease.task_id, "lease_id": lease.lease_id}

    def _start(self, connection: Connection, lease: pb.Lease) -> None:
        def progress(update: pb.TaskProgress) -> None:
            self._on_progress(connection, update)

        job = self._runner.job(lease, progress)
        self._jobs[lease.lease_id] = job
        self._held_empty.clear()
        self._busy += 1
        log.debug("lease started: %s", lease.type, extra=self._lease_extra(lease))
        task = asyncio.create_task(self._run_job(connection, job), name=f"lease {lease.lease_id}")
        self._job_tasks.add(task)
        task.add_done_callback(self._job_tasks.discard)

    async def _run_job(self, connection: Connection, job: Job) -> None:
        try:
            try:
                result = await self._runner.execute(job)
            except Exception as exc:  # a bug in the runner: still answer for the lease
                log.exception("running the lease failed", extra=self._lease_extra(job.lease))
                result = results.failed(job.lease, f"worker error: {exc!r}", retryable=True)
                if job.started_at is not None:
                    results.started_at(result, job.started_at)
                job.ended.set()
            self._report(connection, job, result)
            await job.ended.wait()  # the slot stays busy until the work has really ended
        finally:
            self._release_slot()

    def _report(self, connection: Connection, job: Job, result: pb.TaskResult) -> None:
        if self._jobs.get(job.lease_id) is job:
            del self._jobs[job.lease_id]
            if not self._jobs:
                self._held_empty.set()
        if job.stopped_for is StopReason.LOST or not connection.alive:
            log.debug("result dropped: its stream is gone", extra=self._lease_extra(job.lease))
            return
        connection.send_result(result)

    def _on_progress(self, connection: Connection, update: pb.TaskProgress) -> None:
        """A handler's report (on the loop): for the scheduler, while the lease is held —
        :meth:`_report` lets go of it right before queueing the result."""
        if connection is not self._connection or not connection.alive:
            return
        if update.lease_id not in self._jobs:
            return
        connection.send_progress(update)

    def _release_slot(self) -> None:
        self._busy -= 1
        self._slot_freed.set()
        connection = self._connection
        if connection is not None and connection.alive and not self._draining:
            connection.grant(1)
