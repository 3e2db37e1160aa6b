"""orchestrator.v1.WorkerService.Connect: the lease stream (see worker_service.proto).

The servicer only translates: the hello becomes a :class:`WorkerSession` attached to the
:class:`Dispatcher`; incoming results, heartbeats and credit become dispatcher calls; the
session's outbox becomes outgoing messages, coalesced so that everything queued while
one message was being written leaves in the next (several leases, acks or cancels per
message).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator_client.convert import duration_from_micros, micros_from_timestamp
from orchestrator_client.protocol import WORKER_PROTOCOL_VERSION

from ..domain.clock import Clock
from ..domain.errors import FailedPrecondition, InvalidArgument
from ..domain.model import AttemptEnd, AttemptOutcome, Micros, ProgressUpdate, WorkerRecord
from ..engine.dispatcher import Dispatcher
from ..engine.metrics import SchedulerMetrics
from ..engine.sessions import Outgoing, SendAcks, SendCancel, SendDrain, SendLeases, WorkerSession
from ..security.access import Caller
from . import codec
from .errors import server_stream
from .validation import Limits, require_name, require_type

log = logging.getLogger(__name__)

MAX_SLOTS = 10_000
MAX_TYPES = 1_000
HELLO_TIMEOUT = 10.0

_OUTCOMES = {
    pb.RESULT_OUTCOME_SUCCEEDED: AttemptOutcome.SUCCEEDED,
    pb.RESULT_OUTCOME_FAILED: AttemptOutcome.FAILED,
    pb.RESULT_OUTCOME_CANCELLED: AttemptOutcome.CANCELLED,
    pb.RESULT_OUTCOME_RETURNED: AttemptOutcome.RETURNED,
    pb.RESULT_OUTCOME_TIMED_OUT: AttemptOutcome.TIMED_OUT,
}


class WorkerServicer:
    def __init__(
        self,
        dispatcher: Dispatcher,
        clock: Clock,
        limits: Limits,
        metrics: SchedulerMetrics,
        *,
        heartbeat_interval: Micros,
    ) -> None:
        self.dispatcher = dispatcher
        self.clock = clock
        self.limits = limits
        self.metrics = metrics
        self.heartbeat_interval = heartbeat_interval
        #: Streams being ended, by session id (see :meth:`_ending`).
        self._ends: dict[str, asyncio.Task[None]] = {}

    @server_stream
    async def Connect(
        self,
        request_iterator: AsyncIterator[pb.WorkerMessage],
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> AsyncIterator[pb.SchedulerMessage]:
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT)
        except (TimeoutError, StopAsyncIteration):
            raise InvalidArgument("hello", "the first message must be a hello") from None
        session, record = self._session_from_hello(first, caller)
        yield pb.SchedulerMessage(
            welcome=pb.Welcome(
                protocol_version=WORKER_PROTOCOL_VERSION,
                scheduler_id=self.dispatcher.scheduler_id,
                session_id=session.session_id,
                heartbeat_interval=duration_from_micros(_spread(self.heartbeat_interval)),
                lease_ttl=duration_from_micros(self.dispatcher.lease_ttl),
            )
        )
        await self.dispatcher.attach(session, record)
        # The end of the call hands the worker's leases back too, not only this generator's
        # finally block. When the worker vanishes while a message to it is being written,
        # gRPC cancels that write rather than this generator (suspended at its yield), and
        # drops the generator unclosed: its finally block then waits for the garbage
        # collector. Once in CI a killed worker's task waited for its lease to expire
        # (2 s instead of ~10 ms); this path is the likely cause, not a proven one.
        reader = asyncio.create_task(
            self._read(session, request_iterator), name=f"worker-reader-{session.session_id}"
        )
        loop = asyncio.get_running_loop()

        def call_ended(_: object) -> None:
            loop.call_soon_threadsafe(self._ending, session, reader)

        # types-grpcio declares the callback as a class of its own; gRPC takes any callable.
        context.add_done_callback(call_ended)  # type: ignore[arg-type]
        try:
            closed = False
            while not closed:
                items = [await session.outbox.get()]
                while not session.outbox.empty():
                    items.append(session.outbox.get_nowait())
                closed = None in items  # the stream is over after these
                if closed and reader.done() and (error := reader.exception()) is not None:
                    raise error
                # When the worker closed its side, this still answers what it sent last.
                for message in _coalesce([item for item in items if item is not None]):
                    yield message
        finally:
            await asyncio.shield(self._ending(session, reader))

    def _ending(self, session: WorkerSession, reader: asyncio.Task[None]) -> asyncio.Task[None]:
        """The end of a stream, started once by whichever comes first (this generator's
        finally block or the end of the call): stop reading, let the results already read
        be applied (the reader waits for them), then hand back the leases still held. In
        this order, or results that had arrived would be refused; and once, or a second
        cancel would cut the reader's wait for those results short."""
        task = self._ends.get(session.session_id)
        if task is None:
            task = asyncio.create_task(self._end(session, reader), name="worker-stream-end")
            self._ends[session.session_id] = task
        return task

    async def _end(self, session: WorkerSession, reader: asyncio.Task[None]) -> None:
        try:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await self.dispatcher.detach(session)
        finally:
            self._ends.pop(session.session_id, None)

    def _session_from_hello(
        self, message: pb.WorkerMessage, caller: Caller
    ) -> tuple[WorkerSession, WorkerRecord]:
        if message.WhichOneof("message") != "hello":
            raise InvalidArgument("hello", "the first message must be a hello")
        hello = message.hello
        if hello.protocol_version != WORKER_PROTOCOL_VERSION:
            raise FailedPrecondition(
                f"worker protocol version {hello.protocol_version} is not supported: this "
                f"scheduler speaks version {WORKER_PROTOCOL_VERSION}; upgrade the worker or "
                "the scheduler so that they match"
            )
        require_name("hello.worker_id", hello.worker_id, self.limits)
        worker_id = self._worker_id(hello.worker_id, caller)
        if not hello.task_types:
            raise InvalidArgument("hello.task_types", "must name at least one task type")
        if len(hello.task_types) > MAX_TYPES:
            raise InvalidArgument("hello.task_types", f"at most {MAX_TYPES} types")
        for i, name in enumerate(hello.task_types):
            require_type(f"hello.task_types[{i}]", name)
        if not 1 <= hello.slots <= MAX_SLOTS:
            raise InvalidArgument("hello.slots", f"must be between 1 and {MAX_SLOTS}")
        now = self.clock.now()
        session = WorkerSession(
            session_id=secrets.token_hex(8),
            worker_id=worker_id,
            types=frozenset(hello.task_types),
            slots=hello.slots,
            credit=hello.slots,
            connected_at=now,
        )
        record = WorkerRecord(
            session_id=session.session_id,
            worker_id=worker_id,
            scheduler_id=self.dispatcher.scheduler_id,
            hostname=hello.hostname[:255],
            pid=hello.pid,
            version=hello.version[:64],
            task_types=tuple(sorted(session.types)),
            slots=hello.slots,
            connected_at=now,
            last_heartbeat_at=now,
        )
        return session, record

    def _worker_id(self, hello_id: str, caller: Caller) -> str:
        """With mutual TLS the worker is who its certificate says (its CN), whatever the
        hello claims: a worker cannot pass for another. Without, the hello's id."""
        if not caller.certificate:
            return hello_id
        require_name("client certificate common name", caller.certificate, self.limits)
        if caller.certificate != hello_id:
            log.info(
                "worker %r connects with the certificate of %r: recorded as %r",
                hello_id,
                caller.certificate,
                caller.certificate,
                extra={"worker_id": caller.certificate},
            )
        return caller.certificate

    async def _read(
        self, session: WorkerSession, request_iterator: AsyncIterator[pb.WorkerMessage]
    ) -> None:
        """Apply the worker's messages; a silence of two lease periods ends the stream.

        The worker heartbeats several times per lease period, so two periods of silence
        mean a dead peer, not a busy one (its leases have expired by then anyway); a
        shorter limit also fired when this process itself was stalled for a moment.
        """
        silence = 2 * self.dispatcher.lease_ttl / 1e6
        # Writes run beside the reading: waiting for one commit before reading the next
        # message would cost a commit per message (results trickling in one by one); this
        # way consecutive messages share one group commit.
        writes: set[asyncio.Future[Any]] = set()

        def in_background(kind: str, write: Awaitable[Any]) -> None:
            future = asyncio.ensure_future(write)  # results and heartbeats are futures already
            writes.add(future)
            future.add_done_callback(_finished_write(writes, session, kind))

        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: no task started per message.
                    async with asyncio.timeout(silence) as deadline:
                        message = await anext(request_iterator)
                except StopAsyncIteration:
                    session.left_cleanly = True
                    return
                except TimeoutError:
                    if deadline.expired():
                        log.warning(
                            "worker silent for two lease periods; closing its stream",
                            extra={
                                "worker_id": session.worker_id,
                                "session_id": session.session_id,
                            },
                        )
                        return
                    raise
                kind = message.WhichOneof("message")
                if kind == "results":
                    ends = [self._attempt_end(r) for r in message.results.results]
                    credit = max(0, message.results.credit)
                    in_background(kind, self.dispatcher.results(session, ends, credit))
                elif kind == "heartbeat":
                    lease_ids = list(message.heartbeat.lease_ids)
                    in_background(kind, self.dispatcher.heartbeat(session, lease_ids))
                elif kind == "credit":
                    self.dispatcher.grant(session, max(0, message.credit.slots))
                elif kind == "draining":
                    await self.dispatcher.worker_draining(session)
                elif kind == "progress":
                    updates = [self._progress(u) for u in message.progress.updates]
                    in_background(
                        kind, self.dispatcher.progress([u for u in updates if u is not None])
                    )
                elif kind == "hello":
                    raise InvalidArgument("hello", "sent twice on one stream")
        finally:
            # Every result read is applied (and acknowledged) before the stream is let go:
            # releasing the session first would refuse results that already arrived.
            if writes:
                await asyncio.gather(*writes, return_exceptions=True)
            session.close()

    def _progress(self, update: pb.TaskProgress) -> ProgressUpdate | None:
        return _progress_update(update)

    def _attempt_end(self, result: pb.TaskResult) -> AttemptEnd:
        """A worker's result as an AttemptEnd; a malformed result counts as a failure."""
        started = (
            micros_from_timestamp(result.started_at) if result.HasField("started_at") else None
        )
        outcome = _OUTCOMES.get(result.outcome)
        if outcome is None:
            return AttemptEnd(
                result.lease_id,
                AttemptOutcome.FAILED,
                error=f"worker sent a result with unknown outcome {result.outcome}",
                started_at=started,
            )
        if outcome != AttemptOutcome.SUCCEEDED:
            return AttemptEnd(
                result.lease_id,
                outcome,
                error=result.error[:4096],
                retryable=not result.non_retryable,
                started_at=started,
            )
        problem = _result_problem(result.result_json, self.limits.max_payload_bytes)
        if problem:
            return AttemptEnd(
                result.lease_id, AttemptOutcome.FAILED, error=problem, started_at=started
            )
        text = result.result_json.decode() if result.result_json else "{}"
        return AttemptEnd(result.lease_id, outcome, result_json=text, started_at=started)


def _spread(interval: Micros) -> Micros:
    """Each stream's heartbeat interval, 80-100 % of the configured one.

    A fleet started together would otherwise beat together, a burst of a thousand messages
    (and writes) every interval; different periods spread the beats out within a few
    intervals. Never longer than configured, so the lease TTL's margin holds.
    """
    return int(interval * random.uniform(0.8, 1.0))


MAX_PROGRESS_MESSAGE = 1000
MAX_PROGRESS_DETAILS = 64 * 1024


def _finished_write(
    writes: set[asyncio.Future[Any]], session: WorkerSession, kind: str
) -> Callable[[asyncio.Future[Any]], None]:
    def done(future: asyncio.Future[Any]) -> None:
        writes.discard(future)
        if not future.cancelled() and (error := future.exception()) is not None:
            log.error(
                "applying a worker's %s failed: %s",
                kind,
                error,
                exc_info=error,
                extra={"worker_id": session.worker_id, "session_id": session.session_id},
            )

    return done


def _progress_update(update: pb.TaskProgress) -> ProgressUpdate | None:
    """A progress report as the store keeps it; a malformed one is dropped (and logged):
    progress is advice, never a reason to break the worker's stream."""
    percent = update.percent if update.HasField("percent") else None
    if percent is not None and not (math.isfinite(percent) and 0 <= percent <= 100):
        log.warning("progress percent out of range, dropped", extra={"lease_id": update.lease_id})
        return None
    details: str | None = None
    if update.details_json:
        problem = _result_problem(update.details_json, MAX_PROGRESS_DETAILS)
        if problem:
            log.warning(
                "progress details dropped: %s", problem, extra={"lease_id": update.lease_id}
            )
            return None
        details = update.details_json.decode()
    return ProgressUpdate(update.lease_id, percent, update.message[:MAX_PROGRESS_MESSAGE], details)


def _result_problem(raw: bytes, limit: int) -> str:
    if len(raw) > limit:
        return f"worker sent a result of {len(raw)} bytes, over the limit of {limit}"
    if not raw:
        return ""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return f"worker sent a result that is not JSON: {exc}"
    if not isinstance(value, dict):
        return "worker sent a result that is not a JSON object"
    return ""


#: The most bytes of leases in one message: gRPC's default receive limit in every language
#: is 4 MiB, and a worker's slots times payloads of up to 1 MiB can far exceed it (a message
#: over the limit costs the worker its stream). A lease bigger than this goes alone.
LEASE_MESSAGE_BYTES = 4 * 1024 * 1024 - 64 * 1024


def _lease_batches(leases: Sequence[pb.Lease]) -> list[list[pb.Lease]]:
    """``leases`` in order, in batches of at most :data:`LEASE_MESSAGE_BYTES`."""
    batches: list[list[pb.Lease]] = [[]]
    size = 0
    for lease in leases:
        n = lease.ByteSize() + 8  # the field's tag and length
        if batches[-1] and size + n > LEASE_MESSAGE_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(lease)
        size += n
    return [batch for batch in batches if batch]


def _coalesce(items: Sequence[Outgoing]) -> list[pb.SchedulerMessage]:
    """Merge queued outgoing items into at most one message of each kind (leases into as
    few as fit under :data:`LEASE_MESSAGE_BYTES` each)."""
    acks: list[pb.ResultAck] = []
    cancels: list[str] = []
    cancel_reason = ""
    leases: list[pb.Lease] = []
    drain: SendDrain | None = None
    for item in items:
        if isinstance(item, SendAcks):
            acks.extend(
                pb.ResultAck(
                    lease_id=a.lease_id,
                    accepted=a.accepted,
                    code=(
                        grpc.StatusCode.OK.value[0]
                        if a.accepted
                        else grpc.StatusCode.FAILED_PRECONDITION.value[0]
                    ),
                    message=a.reason,
                )
                for a in item.acks
            )
        elif isinstance(item, SendCancel):
            cancels.extend(item.lease_ids)
            cancel_reason = item.reason
        elif isinstance(item, SendLeases):
            leases.extend(codec.lease_message(lease) for lease in item.leases)
        else:
            drain = item
    messages = []
    if acks:
        messages.append(pb.SchedulerMessage(acks=pb.ResultAcks(acks=acks)))
    for batch in _lease_batches(leases):
        messages.append(pb.SchedulerMessage(leases=pb.LeaseBatch(leases=batch)))
    # After the leases: a cancel may name a lease granted in the same breath.
    if cancels:
        messages.append(
            pb.SchedulerMessage(cancel=pb.CancelLeases(lease_ids=cancels, reason=cancel_reason))
        )
    if drain is not None:
        messages.append(
            pb.SchedulerMessage(
                drain=pb.Drain(grace=duration_from_micros(drain.grace), reason=drain.reason)
            )
        )
    return messages
