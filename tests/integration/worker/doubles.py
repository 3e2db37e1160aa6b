"""Test doubles for the worker's integration tests.

* :class:`ScriptedScheduler`: a real ``grpc.aio`` server on port 0 whose WorkerService
  the test drives message by message — a double of the *peer*, until the real scheduler's
  end-to-end tests take over (tests/e2e).
* :class:`Probe`: handlers that report what they do and block until the test lets them go.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import grpc

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator.v1 import worker_service_pb2_grpc as pb_grpc
from orchestrator_client.convert import duration_from_seconds
from worker_service import TaskContext, handler
from worker_service.registry import HandlerRegistry

WAIT = 10.0  # generous: only reached when a test is about to fail


@dataclass
class End:
    """Ends the stream from the scheduler's side."""

    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""


class FakeStream:
    """One Connect call, as the scheduler sees it."""

    def __init__(self, hello: pb.WorkerHello, session_id: str) -> None:
        self.hello = hello
        self.session_id = session_id
        self.inbox: asyncio.Queue[pb.WorkerMessage | None] = asyncio.Queue()
        self.outbox: asyncio.Queue[pb.SchedulerMessage | End] = asyncio.Queue()
        self.received: list[pb.WorkerMessage] = []
        self.closed = asyncio.Event()

    # Scheduler -> worker.

    def lease(self, *leases: pb.Lease) -> None:
        self.outbox.put_nowait(pb.SchedulerMessage(leases=pb.LeaseBatch(leases=leases)))

    def cancel(self, *lease_ids: str, reason: str = "") -> None:
        message = pb.CancelLeases(lease_ids=lease_ids, reason=reason)
        self.outbox.put_nowait(pb.SchedulerMessage(cancel=message))

    def drain(self, grace: float | None = None, reason: str = "") -> None:
        message = pb.Drain(reason=reason)
        if grace is not None:
            message.grace.CopyFrom(duration_from_seconds(grace))
        self.outbox.put_nowait(pb.SchedulerMessage(drain=message))

    def acks(self, *acks: pb.ResultAck) -> None:
        self.outbox.put_nowait(pb.SchedulerMessage(acks=pb.ResultAcks(acks=acks)))

    def end(self, code: grpc.StatusCode = grpc.StatusCode.OK, details: str = "") -> None:
        self.outbox.put_nowait(End(code, details))

    # Worker -> scheduler.

    async def next(self, within: float = WAIT) -> pb.WorkerMessage | None:
        """The next message, or ``None`` once the worker has half-closed."""
        message = await asyncio.wait_for(self.inbox.get(), within)
        if message is not None:
            self.received.append(message)
        return message

    async def expect(self, kind: str, within: float = WAIT) -> Any:
        """Skip to the next message of ``kind`` (e.g. ``"results"``) and return its body."""
        async with asyncio.timeout(within):
            while True:
                message = await self.next()
                if message is None:
                    raise AssertionError(f"the worker closed the stream before sending {kind}")
                if message.WhichOneof("message") == kind:
                    return getattr(message, kind)

    async def results(self, count: int, within: float = WAIT) -> tuple[list[pb.TaskResult], int]:
        """The next ``count`` results, and the credit granted meanwhile (with them or alone)."""
        found: list[pb.TaskResult] = []
        credit = 0
        async with asyncio.timeout(within):
            while len(found) < count:
                message = await self.next()
                if message is None:
                    raise AssertionError(f"stream closed after {len(found)} of {count} results")
                kind = message.WhichOneof("message")
                if kind == "results":
                    found.extend(message.results.results)
                    credit += message.results.credit
                elif kind == "credit":
                    credit += message.credit.slots
        return found, credit

    async def until_closed(self, within: float = WAIT) -> list[pb.WorkerMessage]:
        """Every message up to the worker's half-close."""
        seen: list[pb.WorkerMessage] = []
        async with asyncio.timeout(within):
            while (message := await self.next()) is not None:
                seen.append(message)
        return seen

    def batches(self) -> list[pb.ResultBatch]:
        return [m.results for m in self.received if m.WhichOneof("message") == "results"]


class ScriptedScheduler(pb_grpc.WorkerServiceServicer):
    """Welcomes each worker, then does what the test says on its :class:`FakeStream`."""

    def __init__(self, heartbeat_interval: float = 30.0) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.streams: asyncio.Queue[FakeStream] = asyncio.Queue()
        self.hellos: list[pb.WorkerHello] = []
        #: When set, the next connections are refused with this status after the hello.
        self.reject: End | None = None
        self._sessions = itertools.count(1)

    async def next_stream(self, within: float = WAIT) -> FakeStream:
        return await asyncio.wait_for(self.streams.get(), within)

    # The read/write API (context.read/context.write), so no iterator is returned.
    async def Connect(self, request_iterator: Any, context: Any) -> None:  # type: ignore[override]
        first = await context.read()
        self.hellos.append(first.hello)
        if self.reject is not None:
            await context.abort(self.reject.code, self.reject.details)
        stream = FakeStream(first.hello, f"session-{next(self._sessions)}")
        welcome = pb.Welcome(
            protocol_version=1,
            scheduler_id="scripted",
            session_id=stream.session_id,
            heartbeat_interval=duration_from_seconds(self.heartbeat_interval),
            lease_ttl=duration_from_seconds(self.heartbeat_interval * 3),
        )
        await context.write(pb.SchedulerMessage(welcome=welcome))
        self.streams.put_nowait(stream)
        pump = asyncio.create_task(self._pump(context, stream))
        try:
            while True:
                item = await stream.outbox.get()
                if isinstance(item, End):
                    if item.code is not grpc.StatusCode.OK:
                        await context.abort(item.code, item.details)
                    return
                await context.write(item)
        finally:
            pump.cancel()
            stream.closed.set()
            stream.inbox.put_nowait(None)

    async def _pump(self, context: Any, stream: FakeStream) -> None:
        while True:
            message = await context.read()
            if message is grpc.aio.EOF:
                # Like the real scheduler: once the worker half-closes, end the stream.
                stream.end()
                return
            stream.inbox.put_nowait(message)


class ScriptedServer:
    """A ``grpc.aio`` server on a loopback port, restartable on the same port."""

    def __init__(self, servicer: ScriptedScheduler) -> None:
        self.servicer = servicer
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_WorkerServiceServicer_to_server(self.servicer, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


def dead_address() -> str:
    """A loopback ``host:port`` nobody listens on (any more): connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def lease(
    task_id: str,
    task_type: str = "block",
    *,
    payload: bytes = b"{}",
    timeout: float | None = None,
    attempt: int = 1,
) -> pb.Lease:
    message = pb.Lease(
        lease_id=f"lease-{task_id}",
        task_id=task_id,
        type=task_type,
        payload_json=payload,
        attempt=attempt,
        max_attempts=3,
    )
    if timeout is not None:
        message.timeout.CopyFrom(duration_from_seconds(timeout))
    return message


@dataclass
class Probe:
    """Handlers that record what runs and wait for the test's go."""

    running: set[str] = field(default_factory=set)
    max_running: int = 0
    started: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    cancelled: list[str] = field(default_factory=list)
    gates: defaultdict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    #: Lets every ``stuck`` (thread) handler return.
    thread_gate: threading.Event = field(default_factory=threading.Event)

    def release(self, *task_ids: str) -> None:
        for task_id in task_ids:
            self.gates[task_id].set()

    async def wait_started(self, count: int, within: float = WAIT) -> list[str]:
        async with asyncio.timeout(within):
            return [await self.started.get() for _ in range(count)]

    def registry(self) -> HandlerRegistry:
        probe = self
        loop = asyncio.get_running_loop()

        @handler("block")
        async def block(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            probe.running.add(ctx.task_id)
            probe.max_running = max(probe.max_running, len(probe.running))
            probe.started.put_nowait(ctx.task_id)
            try:
                await probe.gates[ctx.task_id].wait()
                return {"task": ctx.task_id}
            except asyncio.CancelledError:
                probe.cancelled.append(ctx.task_id)
                raise
            finally:
                probe.running.discard(ctx.task_id)

        @handler("quick")
        async def quick(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            return {"echo": payload}

        @handler("stuck")
        def stuck(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            loop.call_soon_threadsafe(probe.started.put_nowait, ctx.task_id)
            probe.thread_gate.wait(WAIT)
            return {"late": True}

        registry = HandlerRegistry()
        for func in (block, quick, stuck):
            registry.add(func)
        return registry
