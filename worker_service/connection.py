"""One ``WorkerService.Connect`` stream, seen from the worker.

:class:`Connection` speaks the protocol and nothing else: the handshake, a reader that
hands every scheduler message to its :class:`ConnectionHost` (the worker), a single writer
(gRPC allows one write at a time) and a heartbeat timer. What to *do* with leases, cancels
and drains is the host's business.

Results are batched without adding latency: the writer sends whatever has accumulated
each time it wakes up; while one write is in flight, results finishing meanwhile pile up
for the next message. Under load batches grow by themselves; when idle each result leaves
at once.

Progress reports are coalesced: only the latest per lease waits, and the writer sends all
that wait in one ``ProgressReport`` at most every :data:`PROGRESS_INTERVAL` — except that
whatever waits goes out at once, just before them, when results are sent (so the last
progress a handler reported before it finished precedes its result) or when the stream is
closed. Progress for a lease must never follow its result: the worker hands over progress
only for leases whose result it has not queued yet (see ``Worker._on_progress``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator.v1 import worker_service_pb2_grpc as pb_grpc
from orchestrator_client.convert import seconds_from_duration
from orchestrator_client.protocol import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

#: Used when the welcome does not say (it should).
DEFAULT_HEARTBEAT_SECONDS = 10.0
#: Heartbeats go out a bit more often than asked, so that one late tick is still in time.
HEARTBEAT_MARGIN = 0.8
#: Results per ResultBatch and bytes of results per message, well under the message limit.
MAX_BATCH_RESULTS = 1000
MAX_BATCH_BYTES = MAX_MESSAGE_BYTES // 2
#: At most one ProgressReport per this many seconds (besides those sent with results).
PROGRESS_INTERVAL = 0.1

M = TypeVar("M", bound=Message)


class StreamEnded(Exception):
    """The stream ended (or a side task stopped) while the worker was not closing it."""


class ConnectionHost(Protocol):
    """What a connection asks of the worker."""

    def on_leases(self, connection: Connection, leases: Sequence[pb.Lease]) -> None: ...

    def on_cancel(self, lease_ids: Sequence[str], reason: str) -> None: ...

    def on_drain(self, connection: Connection, grace: float | None, reason: str) -> None: ...

    def held_lease_ids(self) -> list[str]: ...


class Connection:
    """A connected, welcomed stream. Build it with :meth:`open`, then :meth:`start` it."""

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[pb.WorkerMessage, pb.SchedulerMessage],
        welcome: pb.Welcome,
        host: ConnectionHost,
        worker_id: str,
    ) -> None:
        self.welcome = welcome
        self._call = call
        self._host = host
        self._log_extra = {"worker_id": worker_id, "session_id": welcome.session_id}
        self._results: list[pb.TaskResult] = []
        # The latest progress per lease, not sent yet; when the last ProgressReport left
        # (loop time), and the timer that wakes the writer when the next one may.
        self._progress: dict[str, pb.TaskProgress] = {}
        self._progress_sent_at = float("-inf")
        self._progress_timer: asyncio.TimerHandle | None = None
        self._credit = 0
        self._heartbeat_due = False
        self._draining_due = False
        self._closing = False
        self._alive = True
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(
        cls,
        channel: grpc.aio.Channel,
        hello: pb.WorkerHello,
        host: ConnectionHost,
        welcome_timeout: float,
        *,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> Connection:
        """Send ``hello``, wait for ``welcome``, both within ``welcome_timeout`` (an address
        that never answers, not even to connect, is given up in time for the next one). A
        refusal raises ``grpc.aio.AioRpcError``."""
        call = pb_grpc.WorkerServiceStub(channel).Connect(metadata=tuple(metadata))
        try:
            async with asyncio.timeout(welcome_timeout):
                await call.write(pb.WorkerMessage(hello=hello))
                first = await call.read()
        except BaseException:
            call.cancel()
            raise
        # isinstance rather than "is EOF": it also narrows the type for mypy.
        if not isinstance(first, pb.SchedulerMessage) or first.WhichOneof("message") != "welcome":
            call.cancel()
            raise StreamEnded(f"expected a welcome from the scheduler, got {first!r}")
        return cls(call, first.welcome, host, hello.worker_id)

    @property
    def heartbeat_interval(self) -> float:
        seconds = seconds_from_duration(self.welcome.heartbeat_interval)
        return seconds if seconds > 0 else DEFAULT_HEARTBEAT_SECONDS

    @property
    def alive(self) -> bool:
        """False once the stream is closed or broken: results sent now would be lost."""
        return self._alive

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self) -> None:
        """Start the named side tasks; the caller watches :attr:`tasks`."""
        self.tasks = [
            asyncio.create_task(self._read_loop(), name="connection reader"),
            asyncio.create_task(self._write_loop(), name="connection writer"),
            asyncio.create_task(self._heartbeat_loop(), name="connection heartbeat"),
        ]

    # What the worker queues; the writer sends it.

    def send_result(self, result: pb.TaskResult) -> None:
        self._results.append(result)
        self._wake.set()

    def send_progress(self, update: pb.TaskProgress) -> None:
        """Queue ``update``, replacing any earlier one of its lease not sent yet. The caller
        makes sure the lease's result is not queued yet (it would be sent after it)."""
        if not self._alive or self._flushed.is_set():
            return
        self._progress[update.lease_id] = update
        if self._progress_timer is None:  # otherwise the timer wakes the writer
            self._wake.set()

    def grant(self, slots: int) -> None:
        """Give the scheduler ``slots`` more credit (with the next results, or alone)."""
        self._credit += slots
        self._wake.set()

    def send_draining(self) -> None:
        self._draining_due = True
        self._wake.set()

    async def close_sending(self) -> None:
        """Flush everything queued, then half-close: the scheduler answers by ending the
        stream once it has acknowledged everything."""
        self._closing = True
        self._wake.set()
        await self._flushed.wait()

    async def wait_ended(self, within: float) -> bool:
        """Wait (at most ``within`` seconds) for the reader to see the end of the stream."""
        reader = self.tasks[0]
        done, _ = await asyncio.wait([reader], timeout=within)
        return bool(done)

    def abort(self) -> None:
        """Drop the stream at once (broken, or done with)."""
        self._alive = False
        self._progress.clear()
        if self._progress_timer is not None:
            self._progress_timer.cancel()
            self._progress_timer = None
        for task in self.tasks:
            task.cancel()
            # A side task may still fail on its way out (a write to the dead stream); the
            # cause was already handled, so collect that error instead of logging it at exit.
            task.add_done_callback(_collect)
        self._call.cancel()

    async def status(self) -> tuple[grpc.StatusCode, str] | None:
        """The stream's final status, if it has one."""
        if not self._call.done():
            return None
        return await self._call.code(), await self._call.details()

    # Side tasks.

    async def _read_loop(self) -> None:
        while True:
            message = await self._call.read()
            if not isinstance(message, pb.SchedulerMessage):  # grpc.aio.EOF
                self._alive = False
                if self._closing:
                    return
                raise StreamEnded("the scheduler ended the stream")
            self._dispatch(message)

    def _dispatch(self, message: pb.SchedulerMessage) -> None:
        kind = message.WhichOneof("message")
        if kind == "leases":
            self._host.on_leases(self, message.leases.leases)
        elif kind == "cancel":
            self._host.on_cancel(message.cancel.lease_ids, message.cancel.reason)
        elif kind == "drain":
            drain = message.drain
            grace = seconds_from_duration(drain.grace) if drain.HasField("grace") else None
            self._host.on_drain(self, grace, drain.reason)
        elif kind == "acks":
            for ack in message.acks.acks:
                if ack.accepted:
                    continue
                extra = {**self._log_extra, "lease_id": ack.lease_id, "code": ack.code}
                log.warning("scheduler refused a result: %s", ack.message, extra=extra)
        else:
            log.warning("unexpected message from the scheduler: %s", kind, extra=self._log_extra)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # results finishing in this same tick join the batch
            for message in self._take():
                await self._call.write(message)
            if self._closing and not self._pending():
                await self._call.done_writing()
                self._flushed.set()
                return

    def _pending(self) -> bool:
        return bool(
            self._results
            or self._credit
            or self._heartbeat_due
            or self._draining_due
            or self._progress
        )

    def _take(self) -> list[pb.WorkerMessage]:
        """Everything due now, in order: draining, progress, results (with credit),
        heartbeat."""
        messages: list[pb.WorkerMessage] = []
        if self._draining_due:
            self._draining_due = False
            messages.append(pb.WorkerMessage(draining=pb.Draining()))
        messages.extend(self._take_progress())
        credit, self._credit = self._credit, 0
        results, self._results = self._results, []
        for batch in _batches(results):
            messages.append(pb.WorkerMessage(results=pb.ResultBatch(results=batch, credit=credit)))
            credit = 0
        if credit:
            messages.append(pb.WorkerMessage(credit=pb.CreditGrant(slots=credit)))
        if self._heartbeat_due:
            self._heartbeat_due = False
            held = self._host.held_lease_ids()
            messages.append(pb.WorkerMessage(heartbeat=pb.Heartbeat(lease_ids=held)))
        return messages

    def _take_progress(self) -> list[pb.WorkerMessage]:
        """The waiting progress if it is due (see the module docstring); if it is not, make
        sure the writer wakes when it is."""
        if not self._progress:
            return []
        loop = asyncio.get_running_loop()
        now = loop.time()
        due_at = self._progress_sent_at + PROGRESS_INTERVAL
        if now < due_at and not self._results and not self._closing:
            if self._progress_timer is None:
                self._progress_timer = loop.call_later(due_at - now, self._progress_due)
            return []
        if self._progress_timer is not None:
            self._progress_timer.cancel()
            self._progress_timer = None
        updates, self._progress = list(self._progress.values()), {}
        self._progress_sent_at = now
        return [
            pb.WorkerMessage(progress=pb.ProgressReport(updates=batch))
            for batch in _batches(updates)
        ]

    def _progress_due(self) -> None:
        self._progress_timer = None
        self._wake.set()

    async def _heartbeat_loop(self) -> None:
        period = self.heartbeat_interval * HEARTBEAT_MARGIN
        while True:
            await asyncio.sleep(period)  # a timer, not synchronisation
            self._heartbeat_due = True
            self._wake.set()


def _collect(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _batches(items: list[M]) -> list[list[M]]:
    """Split results (or progress updates) into messages of at most MAX_BATCH_RESULTS items
    and about MAX_BATCH_BYTES."""
    batches: list[list[M]] = []
    current: list[M] = []
    size = 0
    for item in items:
        item_size = item.ByteSize()
        if current and (len(current) >= MAX_BATCH_RESULTS or size + item_size > MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        batches.append(current)
    return batches
