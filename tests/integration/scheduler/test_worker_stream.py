"""The lease protocol of WorkerService.Connect, driven message by message.

The test plays the worker with raw protocol messages, against the real scheduler, to
check what a real worker cannot easily provoke: version mismatch, credit limits, stale
results, heartbeats on leases that are gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from orchestrator.v1 import task_pb2, task_service_pb2
from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator_client.protocol import WORKER_PROTOCOL_VERSION
from tests.integration.scheduler.conftest import InProcess
from tests.support.polling import eventually
from tests.support.streams import read_message


class ScriptedWorker:
    """Sends what the test says; collects what the scheduler answers."""

    def __init__(self, s: InProcess, slots: int = 2, types: tuple[str, ...] = ("foo",)) -> None:
        self.outgoing: asyncio.Queue[pb.WorkerMessage | None] = asyncio.Queue()
        self.hello = pb.WorkerHello(
            protocol_version=WORKER_PROTOCOL_VERSION,
            worker_id="scripted",
            task_types=list(types),
            slots=slots,
        )
        self.call = s.workers.Connect(self._messages())
        self.leases: list[pb.Lease] = []
        self.cancelled: list[str] = []
        self.acks: list[pb.ResultAck] = []
        self.lease_messages = 0

    async def _messages(self) -> AsyncIterator[pb.WorkerMessage]:
        yield pb.WorkerMessage(hello=self.hello)
        while (message := await self.outgoing.get()) is not None:
            yield message

    async def welcome(self) -> pb.Welcome:
        first = await read_message(self.call, pb.SchedulerMessage)
        assert first.WhichOneof("message") == "welcome"
        self._reader = asyncio.create_task(self._read())
        return first.welcome

    async def _read(self) -> None:
        while True:
            message = await self.call.read()
            if message is grpc.aio.EOF:
                return
            assert isinstance(message, pb.SchedulerMessage)
            kind = message.WhichOneof("message")
            if kind == "leases":
                self.lease_messages += 1
                self.leases.extend(message.leases.leases)
            elif kind == "cancel":
                self.cancelled.extend(message.cancel.lease_ids)
            elif kind == "acks":
                self.acks.extend(message.acks.acks)

    def succeed(self, lease: pb.Lease, result_json: bytes = b"{}") -> None:
        """Report the lease SUCCEEDED, granting its slot back."""
        self.send(
            results=pb.ResultBatch(
                results=[
                    pb.TaskResult(
                        lease_id=lease.lease_id,
                        task_id=lease.task_id,
                        outcome=pb.RESULT_OUTCOME_SUCCEEDED,
                        result_json=result_json,
                    )
                ],
                credit=1,
            )
        )

    def send(self, **kind: Any) -> None:
        self.outgoing.put_nowait(pb.WorkerMessage(**kind))

    async def close(self) -> None:
        self.outgoing.put_nowait(None)
        self.call.cancel()
        self._reader.cancel()


async def create(s: InProcess, n: int, **fields: Any) -> list[task_pb2.Task]:
    response = await s.tasks.BatchCreateTasks(
        task_service_pb2.BatchCreateTasksRequest(
            tasks=[task_service_pb2.CreateTaskRequest(type="foo", **fields) for _ in range(n)]
        )
    )
    return list(response.tasks)


async def get(s: InProcess, task_id: str) -> task_pb2.Task:
    return await s.tasks.GetTask(task_service_pb2.GetTaskRequest(id=task_id))


async def test_incompatible_protocol_version_is_refused_clearly(scheduler: InProcess) -> None:
    worker = ScriptedWorker(scheduler)
    worker.hello.protocol_version = WORKER_PROTOCOL_VERSION + 1
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await worker.call.read()
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "protocol version" in (raised.value.details() or "")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"slots": 0}, "hello.slots"),
        ({"worker_id": ""}, "hello.worker_id"),
        ({"task_types": []}, "hello.task_types"),
        ({"task_types": ["ok", "not ok"]}, "hello.task_types[1]"),
    ],
)
async def test_bad_hello_is_refused_naming_the_field(
    scheduler: InProcess, change: dict[str, object], field: str
) -> None:
    worker = ScriptedWorker(scheduler)
    for key, value in change.items():
        if isinstance(value, list):
            del getattr(worker.hello, key)[:]
            getattr(worker.hello, key).extend(value)
        else:
            setattr(worker.hello, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await worker.call.read()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")


async def test_never_more_leases_than_credit_and_several_per_message(
    scheduler: InProcess,
) -> None:
    await create(scheduler, 5)
    worker = ScriptedWorker(scheduler, slots=3)
    welcome = await worker.welcome()
    assert welcome.session_id and welcome.lease_ttl.seconds == 2
    await eventually(lambda: len(worker.leases) == 3, message="3 leases")
    assert worker.lease_messages == 1  # all three in one message
    await asyncio.sleep(0.3)  # a window in which an over-eager scheduler would send more
    assert len(worker.leases) == 3
    done = worker.leases[0]
    worker.succeed(done, b'{"ok": true}')
    await eventually(lambda: len(worker.leases) == 4, message="a 4th lease after 1 credit")
    await asyncio.sleep(0.3)
    assert len(worker.leases) == 4
    assert [a.accepted for a in worker.acks] == [True]
    task = await get(scheduler, done.task_id)
    assert task.state == task_pb2.TASK_STATE_SUCCEEDED and dict(task.result) == {"ok": True}
    await worker.close()


async def test_stale_result_is_refused_with_failed_precondition(scheduler: InProcess) -> None:
    [task] = await create(scheduler, 1)
    worker = ScriptedWorker(scheduler, slots=1)
    await worker.welcome()
    await eventually(lambda: worker.leases, message="a lease")
    lease = worker.leases[0]
    await scheduler.tasks.CancelTask(task_service_pb2.CancelTaskRequest(id=task.id))
    await eventually(lambda: lease.lease_id in worker.cancelled, message="cancel pushed")
    worker.succeed(lease)
    await eventually(lambda: worker.acks, message="an ack")
    [ack] = worker.acks
    assert not ack.accepted and ack.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert (await get(scheduler, task.id)).state == task_pb2.TASK_STATE_CANCELLED
    await worker.close()


async def test_heartbeat_extends_leases_and_cancels_unknown_ones(scheduler: InProcess) -> None:
    [task] = await create(scheduler, 1)
    worker = ScriptedWorker(scheduler, slots=1)
    await worker.welcome()
    await eventually(lambda: worker.leases, message="a lease")
    lease_id = worker.leases[0].lease_id
    # Heartbeats for 3 s, past the 2 s lease TTL: the lease must stay.
    for _ in range(6):
        worker.send(heartbeat=pb.Heartbeat(lease_ids=[lease_id, "not-a-lease"]))
        await asyncio.sleep(0.5)
    assert (await get(scheduler, task.id)).state == task_pb2.TASK_STATE_RUNNING
    assert "not-a-lease" in worker.cancelled and lease_id not in worker.cancelled
    await worker.close()


async def test_silent_worker_loses_its_lease(scheduler: InProcess) -> None:
    [task] = await create(scheduler, 1, max_attempts=2)
    worker = ScriptedWorker(scheduler, slots=1)
    await worker.welcome()
    await eventually(lambda: worker.leases, message="a lease")
    # No heartbeat: after the 2 s TTL the lease is taken back and counted as an attempt.
    reclaimed = await eventually(
        lambda: _state_is(
            scheduler, task.id, task_pb2.TASK_STATE_PENDING, task_pb2.TASK_STATE_SCHEDULED
        ),
        timeout=6,
        message="lease reclaimed",
    )
    assert reclaimed.attempts == 1
    assert reclaimed.attempt_history[0].outcome == task_pb2.ATTEMPT_OUTCOME_WORKER_LOST
    await worker.close()


async def test_broken_stream_returns_leases_at_once(scheduler: InProcess) -> None:
    [task] = await create(scheduler, 1)
    worker = ScriptedWorker(scheduler, slots=1)
    await worker.welcome()
    await eventually(lambda: worker.leases, message="a lease")
    await worker.close()
    back = await eventually(
        lambda: _state_is(
            scheduler, task.id, task_pb2.TASK_STATE_PENDING, task_pb2.TASK_STATE_SCHEDULED
        ),
        timeout=1.5,
        message="lease returned",
    )
    assert back.attempt_history[0].outcome == task_pb2.ATTEMPT_OUTCOME_WORKER_LOST


async def test_delete_of_running_task_cancels_it_on_the_worker(scheduler: InProcess) -> None:
    [task] = await create(scheduler, 1)
    worker = ScriptedWorker(scheduler, slots=1)
    await worker.welcome()
    await eventually(lambda: worker.leases, message="a lease")
    await scheduler.tasks.DeleteTask(task_service_pb2.DeleteTaskRequest(id=task.id))
    await eventually(lambda: worker.leases[0].lease_id in worker.cancelled, message="cancel")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await get(scheduler, task.id)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    await worker.close()


async def _state_is(s: InProcess, task_id: str, *states: int) -> task_pb2.Task | None:
    task = await get(s, task_id)
    return task if task.state in states else None


async def test_a_drained_worker_that_closes_cleanly_returns_leases_uncounted(
    scheduler: InProcess,
) -> None:
    await create(scheduler, 2)
    worker = ScriptedWorker(scheduler, slots=2)
    await worker.welcome()
    await eventually(lambda: len(worker.leases) == 2, message="2 leases")
    finished, in_flight = worker.leases
    worker.send(draining=pb.Draining())
    worker.succeed(finished)
    worker.outgoing.put_nowait(None)  # half-close: the worker is done
    await eventually(lambda: worker.acks, message="the last result acknowledged")
    assert worker.acks[0].accepted
    back = await eventually(
        lambda: _state_is(scheduler, in_flight.task_id, task_pb2.TASK_STATE_PENDING),
        message="the other lease handed back",
    )
    assert back.attempts == 0  # not counted: the worker left cleanly
    assert back.attempt_history[0].outcome == task_pb2.ATTEMPT_OUTCOME_RETURNED
    await worker.close()


async def test_a_worker_gone_while_its_leases_are_being_written_loses_them_at_once(
    scheduler: InProcess,
) -> None:
    """The worker reads nothing after its welcome, so the scheduler's write of a lease
    message bigger than the stream's flow-control window may still be in flight when the
    worker goes away. Its leases must come back at once, not when they expire (2 s here).
    (This passes without the end-of-call detach in WorkerServicer.Connect too: here the
    dropped generator is collected at once; see the comment there.)"""
    payload = struct_pb2.Struct()
    payload.update({"pad": "x" * 900_000})
    tasks = [(await create(scheduler, 1, payload=payload))[0] for _ in range(8)]
    call = scheduler.workers.Connect()
    hello = pb.WorkerHello(
        protocol_version=WORKER_PROTOCOL_VERSION, worker_id="mute", task_types=["foo"], slots=8
    )
    await call.write(pb.WorkerMessage(hello=hello))
    welcome = await read_message(call, pb.SchedulerMessage)
    assert welcome.WhichOneof("message") == "welcome"

    async def all_leased() -> bool:
        states = [(await get(scheduler, t.id)).state for t in tasks]
        return all(state == task_pb2.TASK_STATE_RUNNING for state in states)

    await eventually(all_leased, message="all leased (their message being written)")
    call.cancel()
    gone = asyncio.get_running_loop().time()

    async def all_back() -> bool:
        back = (task_pb2.TASK_STATE_PENDING, task_pb2.TASK_STATE_SCHEDULED)
        states = [(await get(scheduler, t.id)).state for t in tasks]
        return all(state in back for state in states)

    await eventually(all_back, timeout=1.5, message="the leases back before they expire")
    assert asyncio.get_running_loop().time() - gone < 1.5


async def test_big_leases_are_split_across_messages_a_default_client_accepts(
    scheduler: InProcess,
) -> None:
    """Eight leases of 900 KB payloads, granted in one round, would make one 7 MB message;
    a client with gRPC's default 4 MiB receive limit (this test's channel, and most
    languages' default) would lose its stream over it. They come in several messages."""
    payload = struct_pb2.Struct()
    payload.update({"pad": "x" * 900_000})
    tasks = [(await create(scheduler, 1, payload=payload))[0] for _ in range(8)]
    worker = ScriptedWorker(scheduler, slots=8)
    await worker.welcome()
    await eventually(lambda: len(worker.leases) == 8, message="all eight leases")
    assert {lease.task_id for lease in worker.leases} == {t.id for t in tasks}
    assert worker.lease_messages >= 2
    await worker.close()
