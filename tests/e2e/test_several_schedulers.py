"""Several scheduler processes on ONE database file, with real workers: any scheduler serves
any client or worker, a cancel crosses processes, a worker fails over to another scheduler
when its own dies (whose lease is then reclaimed by the survivor), and groups and type limits
hold across processes.
"""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.intervals import max_overlap
from tests.support.polling import eventually
from tests.support.recording_handlers import read_records
from tests.support.tasks import micros, request, wait_terminal

if TYPE_CHECKING:  # the async stub class exists only in the generated .pyi file
    from orchestrator.v1.admin_service_pb2_grpc import AdminServiceAsyncStub

MODULE = ("--module", "tests.support.recording_handlers")


async def workers_seen(admin: AdminServiceAsyncStub) -> dict[str, set[str]]:
    """Worker id -> the scheduler ids it is connected to, as one scheduler sees them."""
    listing = await admin.ListWorkers(admin_service_pb2.ListWorkersRequest())
    seen: dict[str, set[str]] = {}
    for worker in listing.workers:
        seen.setdefault(worker.id, set()).add(worker.scheduler_id)
    return seen


async def test_any_scheduler_serves_any_client_and_worker(cluster: Cluster, tmp_path: Path) -> None:
    a = await cluster.start_scheduler("--scheduler-id", "sched-a")
    b = await cluster.start_scheduler("--scheduler-id", "sched-b")
    # wb (on B) serves the built-ins and the limited recording type; wa (on A) both recording
    # types only: a group alternating `recorded` and `baz` must alternate between them.
    wb = await cluster.start_worker(
        *MODULE, "--task-types", "foo,sum2,baz,recorded_limited", "--slots", "3",
        scheduler=b, worker_id="wb",
    )  # fmt: skip
    tasks_a, tasks_b = cluster.tasks(a), cluster.tasks(b)
    admin_a, admin_b = cluster.admin(a), cluster.admin(b)

    # Created through A, run by B's worker; B answers what A created, and A lists B's worker.
    first = await tasks_a.CreateTask(request("sum2", {"first": 40, "second": 2}))
    done = await wait_terminal(tasks_a, first.id)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED and dict(done.result) == {"sum": 42}
    assert [a.worker_id for a in done.attempt_history] == ["wb"]
    through_b = await tasks_b.GetTask(task_service_pb2.GetTaskRequest(id=first.id))
    assert through_b == done
    assert (await workers_seen(admin_a))["wb"] == {"sched-b"}

    # Cancelled through A while it runs on B's worker: B tells the worker at its next heartbeat.
    long = await tasks_a.CreateTask(request("foo", {"seconds": 30}))

    async def running_on_wb() -> bool:
        task = await tasks_b.GetTask(task_service_pb2.GetTaskRequest(id=long.id))
        return task.state == task_pb2.TASK_STATE_RUNNING and task.worker_id == "wb"

    await eventually(running_on_wb, message="the long task running on wb")
    cancelled_at = time.monotonic()
    cancelled = await tasks_a.CancelTask(task_service_pb2.CancelTaskRequest(id=long.id))
    assert cancelled.state == task_pb2.TASK_STATE_CANCELLED

    def worker_stopped_it() -> bool:
        return any(
            "task cancelled" in line and long.id in line for line in wb.stderr().splitlines()
        )

    await eventually(worker_stopped_it, timeout=10, message="wb stopped the cancelled task")
    # Well before the 30 s the handler would take: the heartbeat (0.5 s) carried the cancel.
    assert time.monotonic() - cancelled_at < 5.0
    for stub in (tasks_a, tasks_b):
        after = await stub.GetTask(task_service_pb2.GetTaskRequest(id=long.id))
        assert after.state == task_pb2.TASK_STATE_CANCELLED
        assert after.revision == cancelled.revision  # the worker's late answer changed nothing
        assert [x.outcome for x in after.attempt_history] == [task_pb2.ATTEMPT_OUTCOME_CANCELLED]
    assert f"Foo {long.id}" not in wb.stdout()

    # A second worker, on A; each scheduler lists both workers with their own scheduler.
    await cluster.start_worker(
        *MODULE, "--task-types", "recorded,recorded_limited", "--slots", "3",
        scheduler=a, worker_id="wa",
    )  # fmt: skip
    for admin in (admin_a, admin_b):
        assert await workers_seen(admin) == {"wa": {"sched-a"}, "wb": {"sched-b"}}

    # A group spread over both schedulers (created alternately through A and B, its tasks
    # alternating between a type only wa serves and one only wb serves), and a type limit set
    # through A on tasks created through B, served by both workers.
    await admin_a.SetTaskTypeLimits(
        admin_service_pb2.SetTaskTypeLimitsRequest(
            type="recorded_limited", limits=task_pb2.ConcurrencyLimits(max_running=1)
        )
    )
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    payload = {"record_dir": str(record_dir), "sleep": 0.15}
    group: list[str] = []
    for n in range(6):
        stub = (tasks_a, tasks_b)[n % 2]
        made = await stub.CreateTask(
            request("recorded", payload, group="cross")
            if n % 2 == 0
            else request("baz", group="cross")
        )
        group.append(made.id)
    limited = await tasks_b.BatchCreateTasks(
        task_service_pb2.BatchCreateTasksRequest(
            tasks=[request("recorded_limited", payload) for _ in range(8)]
        )
    )
    finished = {}
    for task_id in [*group, *(t.id for t in limited.tasks)]:
        finished[task_id] = await wait_terminal(tasks_a, task_id)
        assert finished[task_id].state == task_pb2.TASK_STATE_SUCCEEDED

    runs = read_records(record_dir)
    spans: dict[str, tuple[float, float]] = {r["task_id"]: (r["start"], r["end"]) for r in runs}
    for task_id in group:  # baz keeps no records: the scheduler's history says when it ran
        if task_id not in spans:
            (attempt,) = finished[task_id].attempt_history
            spans[task_id] = (micros(attempt.started_at) / 1e6, micros(attempt.finished_at) / 1e6)
    workers = [finished[t].attempt_history[0].worker_id for t in group]
    assert workers == ["wa", "wb"] * 3, workers
    for earlier, later in itertools.pairwise(group):
        assert spans[later][0] >= spans[earlier][1], (earlier, later, spans[earlier], spans[later])
    assert max_overlap([spans[t] for t in group]) == 1

    limited_runs = [(r["start"], r["end"]) for r in runs if r["type"] == "recorded_limited"]
    assert len(limited_runs) == 8
    # Had each process counted only its own running tasks, A (which notices B's commits
    # within its poll interval) would have started one for wa while wb ran another.
    assert max_overlap(limited_runs) == 1, sorted(limited_runs)


async def test_worker_fails_over_and_the_survivor_reclaims_the_lease(cluster: Cluster) -> None:
    a = await cluster.start_scheduler("--scheduler-id", "sched-a")
    b = await cluster.start_scheduler("--scheduler-id", "sched-b")
    worker = await cluster.start_worker(
        "--scheduler", f"{b.grpc_address},{a.grpc_address}", "--reconnect-max-delay", "0.5",
        scheduler=b, worker_id="wf",
    )  # fmt: skip
    tasks_a, admin_a = cluster.tasks(a), cluster.admin(a)
    assert (await workers_seen(admin_a))["wf"] == {"sched-b"}

    backoff = task_pb2.BackoffPolicy(jitter=0.0)
    backoff.initial.FromMilliseconds(100)
    task = await tasks_a.CreateTask(request("foo", {"seconds": 1.0}, backoff=backoff))

    async def leased_through_b() -> bool:
        current = await tasks_a.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
        return current.state == task_pb2.TASK_STATE_RUNNING and current.worker_id == "wf"

    await eventually(leased_through_b, message="the task running on wf, connected to B")
    b.signal(signal.SIGKILL)
    killed_at = time.time()
    b.wait(10)

    # The worker reconnects to A, the next address in its list.
    async def on_a() -> bool:
        return "sched-a" in (await workers_seen(admin_a)).get("wf", set())

    await eventually(on_a, timeout=15, message="wf reconnected to A")
    # The lease B granted is reclaimed by A once it expires, and the task runs again there.
    done = await wait_terminal(tasks_a, task.id, timeout=30)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED
    lost, succeeded = done.attempt_history
    assert (lost.worker_id, lost.outcome) == ("wf", task_pb2.ATTEMPT_OUTCOME_WORKER_LOST)
    assert "lease expired" in lost.error, lost.error
    # Not before the lease ran out: heartbeats stopped at the kill, the TTL is 2 s.
    assert micros(lost.finished_at) >= int((killed_at + 1.4) * 1e6), (lost, killed_at)
    assert (succeeded.worker_id, succeeded.outcome) == ("wf", task_pb2.ATTEMPT_OUTCOME_SUCCEEDED)
    assert any("lease taken back" in line and task.id in line for line in a.stderr().splitlines())

    # ... and it keeps working for A.
    more = await tasks_a.CreateTask(request("sum2", {"first": 1, "second": 2}))
    again = await wait_terminal(tasks_a, more.id)
    assert again.state == task_pb2.TASK_STATE_SUCCEEDED
    assert [x.worker_id for x in again.attempt_history] == ["wf"]
    assert worker.running
