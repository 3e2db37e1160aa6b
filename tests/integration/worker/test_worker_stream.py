"""The Worker against a scripted scheduler on a real gRPC server: the Connect protocol."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time

import grpc
import pytest

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator_client.protocol import WORKER_PROTOCOL_VERSION
from tests.integration.worker.conftest import MakeScheduler, StartWorker
from tests.integration.worker.doubles import (
    End,
    FakeStream,
    Probe,
    ScriptedServer,
    dead_address,
    lease,
)
from tests.support.polling import eventually
from worker_service.errors import SchedulerRejected

Outcome = pb.ResultOutcome


def by_task(results: list[pb.TaskResult]) -> dict[str, pb.TaskResult]:
    return {result.task_id: result for result in results}


async def test_hello_then_welcome(scheduler: ScriptedServer, start_worker: StartWorker) -> None:
    start_worker(slots=3)
    stream = await scheduler.servicer.next_stream()
    hello = stream.hello
    assert hello.protocol_version == WORKER_PROTOCOL_VERSION
    assert hello.worker_id == "worker-under-test"
    assert list(hello.task_types) == ["block", "quick", "stuck"]
    assert hello.slots == 3
    assert hello.pid == os.getpid()
    assert hello.hostname == socket.gethostname()
    assert hello.version


async def test_results_are_batched_with_their_credit(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    start_worker(slots=5)
    stream = await scheduler.servicer.next_stream()
    ids = [f"t{i}" for i in range(5)]
    stream.lease(*(lease(task_id) for task_id in ids))
    await probe.wait_started(5)
    probe.release(*ids)  # all finish in the same loop iteration

    results, credit = await stream.results(5)
    assert credit == 5
    assert len(stream.batches()) == 1
    for task_id, result in by_task(results).items():
        assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
        assert result.lease_id == f"lease-{task_id}"
        assert json.loads(result.result_json) == {"task": task_id}


async def test_never_more_running_than_slots(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    start_worker(slots=2)
    stream = await scheduler.servicer.next_stream()
    # A scheduler that ignores the credit: the third lease is handed back unstarted.
    stream.lease(lease("a"), lease("b"), lease("c"))
    await probe.wait_started(2)
    [returned], credit = await stream.results(1)
    assert (returned.task_id, returned.outcome) == ("c", Outcome.RESULT_OUTCOME_RETURNED)
    assert "no free slot" in returned.error
    assert not returned.HasField("started_at")
    assert credit == 0
    assert probe.max_running == 2

    probe.release("a", "b")
    results, credit = await stream.results(2)
    assert {r.task_id for r in results} == {"a", "b"}
    assert credit == 2


async def test_heartbeats_carry_the_held_leases(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    scheduler.servicer.heartbeat_interval = 0.05
    start_worker()
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("a"), lease("b"))
    await probe.wait_started(2)

    async def heartbeat_with(expected: set[str]) -> None:
        while True:
            beat = await stream.expect("heartbeat")
            if set(beat.lease_ids) == expected:
                return

    await heartbeat_with({"lease-a", "lease-b"})
    probe.release("a")
    await stream.results(1)
    await heartbeat_with({"lease-b"})
    probe.release("b")
    await stream.results(1)
    await heartbeat_with(set())


async def test_cancel_stops_the_handler(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    start_worker()
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("a"), lease("b"))
    await probe.wait_started(2)
    stream.cancel("lease-a", "lease-unknown", reason="deleted by a user")

    [result], credit = await stream.results(1)
    assert (result.task_id, result.outcome) == ("a", Outcome.RESULT_OUTCOME_CANCELLED)
    assert result.error == "deleted by a user"
    assert credit == 1
    assert probe.cancelled == ["a"]
    assert probe.running == {"b"}


async def test_an_async_handler_past_its_timeout_is_stopped(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    start_worker()
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("slow", timeout=0.05))

    [result], credit = await stream.results(1)
    assert result.outcome == Outcome.RESULT_OUTCOME_TIMED_OUT
    assert result.error == "timed out after 0.05s"
    assert credit == 1
    assert probe.cancelled == ["slow"]


async def test_a_stuck_thread_keeps_its_slot_until_it_really_ends(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    running = start_worker(slots=1)
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("stuck", "stuck", timeout=0.05))
    await probe.wait_started(1)

    [result], credit = await stream.results(1)
    assert result.outcome == Outcome.RESULT_OUTCOME_TIMED_OUT
    assert credit == 0  # the thread still runs: no slot to give back
    assert running.worker.busy == 1
    stream.lease(lease("extra", "quick"))
    [extra], _ = await stream.results(1)
    assert extra.outcome == Outcome.RESULT_OUTCOME_RETURNED

    probe.thread_gate.set()
    grant = await stream.expect("credit")
    assert grant.slots == 1
    assert running.worker.busy == 0


async def test_a_refused_result_is_logged(
    scheduler: ScriptedServer,
    start_worker: StartWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    start_worker()
    stream = await scheduler.servicer.next_stream()
    stream.acks(
        pb.ResultAck(lease_id="lease-old", accepted=False, code=9, message="lease is stale"),
        pb.ResultAck(lease_id="lease-ok", accepted=True),
    )

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "refused a result" in r.getMessage()]

    [record] = await eventually(logged, message="refusal logged")
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "scheduler refused a result: lease is stale"
    assert (record.lease_id, record.code) == ("lease-old", 9)  # type: ignore[attr-defined]


async def test_scheduler_drain_finishes_returns_then_reconnects(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    start_worker(slots=2)
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("done"), lease("unfinished"))
    await probe.wait_started(2)
    stream.drain(grace=0.3, reason="scheduler restarting")

    await stream.expect("draining")
    stream.lease(lease("late", "quick"))
    probe.release("done")
    results, credit = await stream.results(3)
    outcomes = {r.task_id: r.outcome for r in results}
    assert outcomes == {
        "late": Outcome.RESULT_OUTCOME_RETURNED,
        "done": Outcome.RESULT_OUTCOME_SUCCEEDED,
        "unfinished": Outcome.RESULT_OUTCOME_RETURNED,
    }
    assert "grace ran out" in by_task(results)["unfinished"].error
    started = {r.task_id for r in results if r.HasField("started_at")}
    assert started == {"done", "unfinished"}  # "late" came while draining: never started
    assert credit == 0  # draining: no new work wanted
    await stream.until_closed()

    again = await scheduler.servicer.next_stream()
    assert again.hello.slots == 2
    assert probe.cancelled == ["unfinished"]


async def test_stop_is_graceful(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    running = start_worker(shutdown_grace=0.3)
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("quick-to-end"), lease("never-ends"))
    await probe.wait_started(2)
    stopping = asyncio.create_task(running.worker.stop())

    await stream.expect("draining")
    probe.release("quick-to-end")
    rest = await stream.until_closed()
    results = [r for m in rest if m.WhichOneof("message") == "results" for r in m.results.results]
    assert {r.task_id: r.outcome for r in results} == {
        "quick-to-end": Outcome.RESULT_OUTCOME_SUCCEEDED,
        "never-ends": Outcome.RESULT_OUTCOME_RETURNED,
    }
    await stopping
    await running.task  # run() returned
    await running.worker.stop()  # idempotent
    assert scheduler.servicer.streams.empty()  # no reconnection


async def test_stop_when_idle(scheduler: ScriptedServer, start_worker: StartWorker) -> None:
    running = start_worker()
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("first", "quick"))
    await stream.results(1)  # the worker is past the handshake
    await running.worker.stop()
    assert [m.WhichOneof("message") for m in await stream.until_closed()] == ["draining"]
    assert running.task.done()


async def test_a_broken_stream_cancels_its_tasks_and_reconnects(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    start_worker(slots=2)
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("orphan"))
    await probe.wait_started(1)
    stream.end(grpc.StatusCode.UNAVAILABLE, "scheduler going away")

    again = await scheduler.servicer.next_stream()
    assert probe.cancelled == ["orphan"]
    assert again.hello.slots == 2
    again.lease(lease("next", "quick"))
    [result], credit = await again.results(1)  # nothing about "orphan" on the new stream
    assert result.task_id == "next"
    assert credit == 1


async def test_reconnects_after_the_server_restarts(
    scheduler: ScriptedServer, start_worker: StartWorker
) -> None:
    start_worker()
    first = await scheduler.servicer.next_stream()
    await scheduler.stop()
    await first.closed.wait()
    await scheduler.start()  # same port

    again = await scheduler.servicer.next_stream()
    assert again.hello.worker_id == first.hello.worker_id
    again.lease(lease("after-restart", "quick"))
    [result], _ = await again.results(1)
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED


async def test_waits_for_a_stuck_slot_before_reconnecting(
    scheduler: ScriptedServer,
    start_worker: StartWorker,
    probe: Probe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = start_worker(slots=1)
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("stuck", "stuck"))
    await probe.wait_started(1)
    stream.end(grpc.StatusCode.UNAVAILABLE, "bye")

    def waiting() -> bool:
        return any("slots are held" in r.getMessage() for r in caplog.records)

    await eventually(waiting, message="the worker waits for a free slot")
    assert scheduler.servicer.streams.empty()  # no hello with zero slots
    assert running.worker.busy == 1
    probe.thread_gate.set()
    again = await scheduler.servicer.next_stream()
    assert again.hello.slots == 1


async def test_refused_at_hello_is_fatal(
    scheduler: ScriptedServer, start_worker: StartWorker
) -> None:
    scheduler.servicer.reject = End(
        grpc.StatusCode.FAILED_PRECONDITION, "protocol version 1 is not supported"
    )
    running = start_worker()
    with pytest.raises(SchedulerRejected, match="FAILED_PRECONDITION: protocol version 1"):
        await asyncio.wait_for(running.task, 10)
    assert len(scheduler.servicer.hellos) == 1  # not retried


async def test_refused_mid_stream_is_fatal(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    running = start_worker()
    stream: FakeStream = await scheduler.servicer.next_stream()
    stream.lease(lease("a"))
    await probe.wait_started(1)
    stream.end(grpc.StatusCode.FAILED_PRECONDITION, "worker id taken")
    with pytest.raises(SchedulerRejected, match="worker id taken"):
        await asyncio.wait_for(running.task, 10)
    assert probe.cancelled == ["a"]


def started_at(result: pb.TaskResult) -> float | None:
    if not result.HasField("started_at"):
        return None
    return result.started_at.seconds + result.started_at.nanos / 1e9


async def test_results_say_when_the_handler_started(
    scheduler: ScriptedServer, start_worker: StartWorker, probe: Probe
) -> None:
    start_worker(slots=1)
    stream = await scheduler.servicer.next_stream()
    before = time.time()
    stream.lease(lease("a"), lease("over-credit", "quick"))
    [started_id] = await probe.wait_started(1)
    probe.release("a")
    results, _ = await stream.results(2)
    after = time.time()
    found = by_task(results)
    assert started_id == "a"
    started = started_at(found["a"])
    assert started is not None
    assert before - 1e-6 <= started <= after  # microseconds on the wire
    # Returned for want of a slot: never started.
    assert found["over-credit"].outcome == Outcome.RESULT_OUTCOME_RETURNED
    assert started_at(found["over-credit"]) is None


async def test_failover_skips_a_dead_address(
    scheduler: ScriptedServer,
    start_worker: StartWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    dead = dead_address()
    start_worker(schedulers=(dead, scheduler.address))
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("t", "quick"))
    [result], _ = await stream.results(1)
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED

    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"connection to the scheduler at {dead} failed") for m in messages)
    # The next address after the first backoff step only (50-100 ms).
    [pause] = [
        float(m.rsplit(" in ", 1)[1].rstrip("s"))
        for m in messages
        if m.startswith(f"reconnecting to the scheduler at {scheduler.address} in ")
    ]
    assert 0.05 <= pause <= 0.1
    assert f"connected to scheduler scripted at {scheduler.address} (session session-1, " in (
        "\n".join(messages)
    )


async def test_failover_moves_on_when_a_scheduler_goes_away(
    scheduler: ScriptedServer,
    make_scheduler: MakeScheduler,
    start_worker: StartWorker,
    probe: Probe,
) -> None:
    second = await make_scheduler()
    start_worker(schedulers=(scheduler.address, second.address))
    first_stream = await scheduler.servicer.next_stream()
    assert second.servicer.hellos == []  # the first address first
    first_stream.lease(lease("orphan"))
    await probe.wait_started(1)

    await scheduler.stop()  # the process dies: its stream breaks
    stream = await second.servicer.next_stream()
    assert probe.cancelled == ["orphan"]
    stream.lease(lease("on-second", "quick"))
    [result], _ = await stream.results(1)
    assert result.task_id == "on-second"

    # A drain moves on too (that scheduler is going away): back to the first, restarted.
    await scheduler.start()
    stream.drain(grace=1, reason="scheduler shutting down")
    await stream.until_closed()
    again = await scheduler.servicer.next_stream()
    again.lease(lease("on-first-again", "quick"))
    [result], _ = await again.results(1)
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
    assert len(second.servicer.hellos) == 1


async def test_a_refusal_from_one_scheduler_of_the_list_is_fatal(
    scheduler: ScriptedServer, make_scheduler: MakeScheduler, start_worker: StartWorker
) -> None:
    refusing = await make_scheduler()
    refusing.servicer.reject = End(grpc.StatusCode.FAILED_PRECONDITION, "protocol version 1")
    running = start_worker(schedulers=(dead_address(), refusing.address, scheduler.address))
    with pytest.raises(SchedulerRejected, match="FAILED_PRECONDITION: protocol version 1"):
        await asyncio.wait_for(running.task, 10)
    assert len(refusing.servicer.hellos) == 1
    assert scheduler.servicer.hellos == []  # a mismatch, not an outage: no failover
