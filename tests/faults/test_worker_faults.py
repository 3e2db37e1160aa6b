"""Workers that die or freeze mid-task.

- SIGKILL: the broken stream is noticed by the scheduler at once and a lost worker's task
  is retried at once, so the task's next lease follows the kill within a second.
- SIGSTOP past the lease: the heartbeats stop, the lease is reclaimed within the lease TTL
  (plus a reap interval), and the frozen worker's late result, once it wakes (before the
  scheduler closes its silent stream, which takes two lease periods), is refused with
  FAILED_PRECONDITION and changes nothing.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import grpc

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.faults.checker import check
from tests.faults.profile import Profile
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess
from tests.support.recording_handlers import read_records
from tests.support.tasks import micros, request, wait_terminal

WORKER = ("--module", "tests.support.recording_handlers", "--slots", "1")
TYPES = ("--task-types", "recorded")
#: The scheduler's FAST lease TTL (tests/support/cluster.py).
LEASE_TTL = 2.0
KILL_ROUNDS = {"short": 3, "long": 20}


def _outcomes(task: task_pb2.Task) -> list[str]:
    return [
        task_pb2.AttemptOutcome.Name(a.outcome).removeprefix("ATTEMPT_OUTCOME_")
        for a in task.attempt_history
    ]


async def _running_on(
    cluster: Cluster, workers: list[ManagedProcess], task_id: str
) -> tuple[ManagedProcess, task_pb2.Task]:
    """The worker whose handler is running the task now (its log shows the lease started)."""
    stub = cluster.tasks()

    async def started() -> tuple[ManagedProcess, task_pb2.Task] | None:
        task = await stub.GetTask(task_service_pb2.GetTaskRequest(id=task_id))
        if task.state != task_pb2.TASK_STATE_RUNNING:
            return None
        worker = next(w for w in workers if w.name == task.worker_id)
        return (worker, task) if f"lease_id={task.lease_id}" in worker.stderr() else None

    return await eventually(started, timeout=20, message=f"task {task_id} running")


async def test_worker_sigkill_mid_task_is_leased_again_within_a_second(
    cluster: Cluster, tmp_path: Path, profile: Profile
) -> None:
    rounds = KILL_ROUNDS[profile.name]
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler(*TYPES)
    # One spare worker per round: each round kills the one running its task.
    workers = [await cluster.start_worker(*WORKER, scheduler=scheduler, wait=False)]
    workers += [
        await cluster.start_worker(*WORKER, scheduler=scheduler, wait=False) for _ in range(rounds)
    ]
    for worker in workers:
        await cluster.wait_for_worker(worker.name, scheduler)
    stub = cluster.tasks(scheduler)
    gaps: list[float] = []
    created: list[str] = []
    for _ in range(rounds):
        task = await stub.CreateTask(request("recorded", {"record_dir": str(records), "sleep": 1}))
        created.append(task.id)
        victim, running = await _running_on(cluster, workers, task.id)
        killed_at = time.time()
        victim.kill()
        workers.remove(victim)
        done = await wait_terminal(stub, task.id)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
        assert _outcomes(done) == ["WORKER_LOST", "SUCCEEDED"], _outcomes(done)
        lost, retried = done.attempt_history
        assert lost.lease_id == running.lease_id and lost.worker_id == victim.name
        assert retried.worker_id != victim.name
        gaps.append(micros(retried.leased_at) / 1e6 - killed_at)
    for worker in workers:
        assert worker.running, worker.dump()
    report = check(
        cluster.location, acknowledged=created, records=records, lease_ttl=LEASE_TTL,
        require_terminal=True,
    )  # fmt: skip
    print(
        f"\nworker SIGKILL mid-task, {rounds} rounds: kill to next lease "
        f"{', '.join(f'{g * 1000:.0f} ms' for g in gaps)} (max {max(gaps) * 1000:.0f} ms); "
        f"checker ok ({report.tasks} tasks, {report.attempts} attempts)"
    )
    assert max(gaps) <= 1.0, f"a killed worker's task was leased again only after {max(gaps)} s"


_REFUSED = re.compile(r"scheduler refused a result: .* lease_id=(\w+) code=(\d+)")


async def test_worker_sigstop_past_its_lease_is_reclaimed_and_its_late_result_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler(*TYPES)
    worker = await cluster.start_worker(*WORKER, scheduler=scheduler)
    stub = cluster.tasks(scheduler)
    admin = cluster.admin(scheduler)
    task = await stub.CreateTask(request("recorded", {"record_dir": str(records), "sleep": 1}))
    _, running = await _running_on(cluster, [worker], task.id)
    stale_lease = running.lease_id

    stopped_at = time.time()
    worker.signal(signal.SIGSTOP)
    try:

        async def reclaimed() -> task_pb2.Task | None:
            found = await stub.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
            history = found.attempt_history
            return found if history and history[0].HasField("finished_at") else None

        after_reclaim = await eventually(reclaimed, timeout=10, message="lease reclaimed")
        reclaim_delay = micros(after_reclaim.attempt_history[0].finished_at) / 1e6 - stopped_at
        assert _outcomes(after_reclaim) == ["WORKER_LOST"], _outcomes(after_reclaim)
        # Hold the task still (no other worker could take it anyway: the only one is frozen
        # with no credit left), so that its revision can only change through the late result.
        await admin.PauseTaskType(admin_service_pb2.PauseTaskTypeRequest(type="recorded"))
        before = await stub.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
        assert before.revision == after_reclaim.revision
        frozen_for = time.time() - stopped_at
        # The scheduler closes a stream silent for two lease periods; the late result must
        # arrive on the still-open stream to be refused (rather than dropped with it).
        assert frozen_for < 2 * LEASE_TTL - 0.3, f"too slow to wake it in time: {frozen_for} s"
    finally:
        worker.signal(signal.SIGCONT)

    def refusal() -> tuple[str, str] | None:
        found = _REFUSED.search(worker.stderr())
        return (found.group(1), found.group(2)) if found else None

    refused_lease, code = await eventually(refusal, timeout=10, message="late result refused")
    assert refused_lease == stale_lease
    assert int(code) == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert re.search(f"result refused: stale lease.*lease_id={stale_lease}", scheduler.stderr())
    late = re.search(
        f"task (succeeded|failed|timed_out|cancelled|returned).*lease_id={stale_lease}",
        worker.stderr(),
    )
    after_refusal = await stub.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
    assert after_refusal.revision == before.revision, "a refused result changed the task"
    assert after_refusal.state == before.state and _outcomes(after_refusal) == ["WORKER_LOST"]

    await admin.ResumeTaskType(admin_service_pb2.ResumeTaskTypeRequest(type="recorded"))
    done = await wait_terminal(stub, task.id)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
    assert _outcomes(done) == ["WORKER_LOST", "SUCCEEDED"], _outcomes(done)
    assert worker.running, worker.dump()
    report = check(
        cluster.location, acknowledged=[task.id], records=records, lease_ttl=LEASE_TTL,
        require_terminal=True,
    )  # fmt: skip
    runs = read_records(records)
    print(
        f"\nworker SIGSTOP: lease reclaimed {reclaim_delay:.2f} s after the stop (TTL "
        f"{LEASE_TTL:g} s), woken after {frozen_for:.2f} s; its late result "
        f"({late.group(1) if late else '?'}) refused with FAILED_PRECONDITION, revision "
        f"{before.revision} unchanged; {len(runs)} recorded run(s); checker ok "
        f"({report.tasks} task, {report.attempts} attempts)"
    )
    assert reclaim_delay <= LEASE_TTL + 1.0, f"reclaimed {reclaim_delay:.2f} s after the stop"
