"""Poison tasks: handlers that kill their process or never return.

- A ``cpu_bound`` handler that kills its pool child fails its attempts (the worker replaces
  the broken pool) and the task ends FAILED after ``max_attempts``; the worker lives on and
  serves, process-pool tasks included.
- A handler that hangs is cut off at its timeout (TIMED_OUT) and its slot comes back.
- An in-process (async or thread) handler runs inside the worker, so it *can* kill the worker
  itself: each attempt takes a worker down (WORKER_LOST, retried at once on the next one)
  until ``max_attempts`` ends the task FAILED. That is by design, and why CPU-heavy or unsafe
  code belongs in ``cpu_bound`` handlers, whose process can die alone. The scheduler stays up
  and serves.
"""

from __future__ import annotations

import time
from pathlib import Path

from google.protobuf import duration_pb2

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.faults.checker import check
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.tasks import micros, request, wait_terminal

MODULE = ("--module", "tests.support.recording_handlers")
TYPES = ("--task-types", "recorded,recorded_cpu,suicide,hang,kill_worker")
#: The scheduler's FAST lease TTL (tests/support/cluster.py).
LEASE_TTL = 2.0
QUICK_RETRY = task_pb2.BackoffPolicy(initial=duration_pb2.Duration(nanos=100_000_000))


def _outcomes(task: task_pb2.Task) -> list[str]:
    return [
        task_pb2.AttemptOutcome.Name(a.outcome).removeprefix("ATTEMPT_OUTCOME_")
        for a in task.attempt_history
    ]


async def test_cpu_bound_handler_that_kills_its_pool_child(
    cluster: Cluster, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler(*TYPES)
    worker = await cluster.start_worker(*MODULE, "--cpu-workers", "1", scheduler=scheduler)
    stub = cluster.tasks(scheduler)
    started = time.monotonic()
    poison = await stub.CreateTask(request("suicide", max_attempts=2, backoff=QUICK_RETRY))
    failed = await wait_terminal(stub, poison.id, timeout=60)
    took = time.monotonic() - started
    assert failed.state == task_pb2.TASK_STATE_FAILED, failed
    assert _outcomes(failed) == ["FAILED", "FAILED"], _outcomes(failed)
    assert all(a.worker_id == worker.name for a in failed.attempt_history)
    assert worker.running, worker.dump()
    # The worker still serves: an async task, and a process-pool task on a fresh pool.
    normal = await stub.CreateTask(request("recorded", {"record_dir": str(records)}))
    cpu = await stub.CreateTask(request("recorded_cpu", {"record_dir": str(records)}))
    for task in (normal, cpu):
        done = await wait_terminal(stub, task.id, timeout=30)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
        assert done.attempt_history[-1].worker_id == worker.name
    assert worker.running, worker.dump()
    report = check(
        cluster.location, acknowledged=[poison.id, normal.id, cpu.id], records=records,
        lease_ttl=LEASE_TTL, require_terminal=True,
    )  # fmt: skip
    print(
        f"\ncpu_bound suicide: FAILED after 2 attempts in {took:.2f} s ({failed.error!r}); the "
        f"worker serves on; checker ok ({report.tasks} tasks, {report.attempts} attempts)"
    )


async def test_hanging_handler_is_cut_off_at_its_timeout_and_its_slot_comes_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler(*TYPES)
    worker = await cluster.start_worker(*MODULE, "--slots", "1", scheduler=scheduler)
    stub = cluster.tasks(scheduler)
    timeout = 1.0
    hung = await stub.CreateTask(
        request("hang", max_attempts=1, timeout=duration_pb2.Duration(seconds=int(timeout)))
    )

    async def running() -> bool:
        task = await stub.GetTask(task_service_pb2.GetTaskRequest(id=hung.id))
        return task.state == task_pb2.TASK_STATE_RUNNING

    await eventually(running, message="the hanging task running")
    # Queued behind it: the only slot is held until the hanging attempt is cut off.
    after = await stub.CreateTask(request("recorded", {"record_dir": str(records)}))
    cut = await wait_terminal(stub, hung.id, timeout=timeout + 10)
    assert cut.state == task_pb2.TASK_STATE_FAILED, cut
    assert _outcomes(cut) == ["TIMED_OUT"], _outcomes(cut)
    attempt = cut.attempt_history[0]
    cut_after = (micros(cut.finished_at) - micros(attempt.leased_at)) / 1e6
    done = await wait_terminal(stub, after.id, timeout=10)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
    assert done.attempt_history[0].worker_id == worker.name
    next_lease = (micros(done.attempt_history[0].leased_at) - micros(cut.finished_at)) / 1e6
    assert worker.running, worker.dump()
    report = check(
        cluster.location, acknowledged=[hung.id, after.id], records=records,
        lease_ttl=LEASE_TTL, require_terminal=True,
    )  # fmt: skip
    print(
        f"\nhanging handler (timeout {timeout:g} s): FAILED/TIMED_OUT {cut_after:.2f} s after "
        f"its lease ({cut.error!r}); the slot's next task leased {next_lease * 1000:.0f} ms "
        f"after that; checker ok ({report.tasks} tasks, {report.attempts} attempts)"
    )
    assert cut_after <= timeout + 2.0, f"cut off {cut_after:.2f} s after its lease"


async def test_async_handler_that_kills_its_worker(cluster: Cluster, tmp_path: Path) -> None:
    """In-process handlers can kill their worker; the scheduler stays up and serves."""
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler(*TYPES)
    workers = [
        await cluster.start_worker(*MODULE, "--slots", "1", scheduler=scheduler) for _ in range(2)
    ]
    stub = cluster.tasks(scheduler)
    started = time.monotonic()
    poison = await stub.CreateTask(request("kill_worker", max_attempts=2))
    failed = await wait_terminal(stub, poison.id, timeout=20)
    took = time.monotonic() - started
    assert failed.state == task_pb2.TASK_STATE_FAILED, failed
    assert _outcomes(failed) == ["WORKER_LOST", "WORKER_LOST"], _outcomes(failed)
    assert {a.worker_id for a in failed.attempt_history} == {w.name for w in workers}
    for worker in workers:  # by design: each attempt took its worker down
        assert await worker.wait_async(10) == 9, worker.dump()
    assert scheduler.running, scheduler.dump()
    survivor = await cluster.start_worker(*MODULE, scheduler=scheduler)
    normal = await stub.CreateTask(request("recorded", {"record_dir": str(records)}))
    done = await wait_terminal(stub, normal.id)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
    assert done.attempt_history[0].worker_id == survivor.name
    report = check(
        cluster.location, acknowledged=[poison.id, normal.id], records=records,
        lease_ttl=LEASE_TTL, require_terminal=True,
    )  # fmt: skip
    print(
        f"\nasync handler killing its worker: FAILED after 2 attempts (2 workers lost) in "
        f"{took:.2f} s; the scheduler serves on; checker ok ({report.tasks} tasks, "
        f"{report.attempts} attempts)"
    )
