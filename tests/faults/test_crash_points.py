"""A crash at each persistence step: the scheduler exits (status 70, like ``kill -9``) right
before or right after the COMMIT of a create, a claim or a result, through the
``--crash-at KIND:MOMENT`` test hook; it is restarted without the hook on the same port, and
everything finishes with exactly one accepted completion per task.

What each point must leave behind:

=====================  ===================================================================
create:before-commit   the client saw an error and nothing was stored; the retry creates it
create:after-commit    the client saw an error, but the task exists; the retry with the same
                       idempotency key answers that task (no duplicate)
claim:before-commit    no lease was taken: one attempt, which succeeds
claim:after-commit     a lease nobody received: it expires (WORKER_LOST), the retry succeeds
end:before-commit      the result was lost: the lease expires, the task runs again
                       (at-least-once: the worker ran it twice), one completion accepted
end:after-commit       the result is stored: one attempt, one run
=====================  ===================================================================
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from orchestrator.v1 import task_pb2, task_service_pb2
from orchestrator_client import AsyncClient, RetryPolicy
from scheduler_service.store.sqlite.writer import CRASH_EXIT_CODE
from tests.faults.checker import check
from tests.support.cluster import Cluster
from tests.support.processes import SchedulerProcess
from tests.support.recording_handlers import read_records
from tests.support.tasks import request, wait_terminal

# Tests of SQLite itself (the --crash-at hook is the SQLite writer's).
pytestmark = pytest.mark.sqlite_only

TYPES = ("--task-types", "recorded")
WORKER = ("--module", "tests.support.recording_handlers", "--reconnect-max-delay", "0.5")
KEY = "crash-point-key"
#: The scheduler's FAST lease TTL (tests/support/cluster.py).
LEASE_TTL = 2.0


async def _crashed(scheduler: SchedulerProcess) -> float:
    """Wait for the hook to end the scheduler; answer when it was seen gone."""
    code = await scheduler.wait_async(20)
    assert code == CRASH_EXIT_CODE, f"exit status {code}\n{scheduler.dump()}"
    assert "crash hook" in scheduler.stderr(), scheduler.dump()
    return time.monotonic()


async def _all_tasks(cluster: Cluster, scheduler: SchedulerProcess) -> list[task_pb2.Task]:
    listing = await cluster.tasks(scheduler).ListTasks(
        task_service_pb2.ListTasksRequest(page_size=100, view=task_pb2.TASK_VIEW_FULL)
    )
    return list(listing.tasks)


def _outcomes(task: task_pb2.Task) -> list[str]:
    return [
        task_pb2.AttemptOutcome.Name(a.outcome).removeprefix("ATTEMPT_OUTCOME_")
        for a in task.attempt_history
    ]


@pytest.mark.parametrize("moment", ["before-commit", "after-commit"])
async def test_crash_at_create(cluster: Cluster, tmp_path: Path, moment: str) -> None:
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler(*TYPES, "--crash-at", f"create:{moment}")
    create = request("recorded", {"record_dir": str(records)}, idempotency_key=KEY)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.tasks(scheduler).CreateTask(create, timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
    crashed_at = await _crashed(scheduler)
    scheduler = await cluster.restart_scheduler(scheduler, *TYPES)
    restarted = time.monotonic() - crashed_at

    stored = await _all_tasks(cluster, scheduler)
    if moment == "before-commit":
        assert stored == [], "a create that crashed before its commit was stored"
    else:
        assert [t.idempotency_key for t in stored] == [KEY], "the committed create is missing"
    # The client retries (it saw no answer): the key makes the retry safe either way.
    retried = await cluster.tasks(scheduler).CreateTask(create, timeout=10)
    if moment == "after-commit":
        assert retried.id == stored[0].id, "the retry made a second task"
    after_retry = await _all_tasks(cluster, scheduler)
    assert [t.id for t in after_retry] == [retried.id], "one create, one task"

    await cluster.start_worker(*WORKER, scheduler=scheduler)
    done = await wait_terminal(cluster.tasks(scheduler), retried.id)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
    assert _outcomes(done) == ["SUCCEEDED"]
    report = check(
        cluster.database, acknowledged=[retried.id], records=records, lease_ttl=LEASE_TTL,
        require_terminal=True,
    )  # fmt: skip
    print(
        f"\ncreate:{moment}: client got UNAVAILABLE, {len(stored)} task(s) stored, the retry "
        f"answered {retried.id}; restart to ready {restarted:.2f} s; checker ok "
        f"({report.tasks} task, {report.attempts} attempt)"
    )


async def test_keyed_create_retried_by_the_client_across_a_crash_after_commit(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The client's own UNAVAILABLE retry (a timeout whose create did commit): the keyed
    create is repeated transparently across the restart and answers the stored task."""
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler(*TYPES, "--crash-at", "create:after-commit")
    policy = RetryPolicy(retries=100, initial=0.05, maximum=0.25)
    async with AsyncClient(scheduler.grpc_address, timeout=5.0, retries=policy) as client:
        started = time.monotonic()
        creating = asyncio.create_task(
            client.create_task("recorded", {"record_dir": str(records)}, idempotency_key=KEY)
        )
        await _crashed(scheduler)
        assert not creating.done(), "the create was answered by a scheduler that crashed"
        scheduler = await cluster.restart_scheduler(scheduler, *TYPES)
        task = await asyncio.wait_for(creating, 30)
        answered_after = time.monotonic() - started
        stored = await _all_tasks(cluster, scheduler)
        assert [t.id for t in stored] == [task.id], f"expected one task, got {stored}"
        assert stored[0].idempotency_key == KEY
    await cluster.start_worker(*WORKER, scheduler=scheduler)
    done = await wait_terminal(cluster.tasks(scheduler), task.id)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
    report = check(
        cluster.database, acknowledged=[task.id], records=records, lease_ttl=LEASE_TTL,
        require_terminal=True,
    )  # fmt: skip
    print(
        f"\nclient retry across create:after-commit: answered {answered_after:.2f} s after "
        f"the call, one task; checker ok ({report.tasks} task, {report.attempts} attempt)"
    )


@pytest.mark.parametrize("moment", ["before-commit", "after-commit"])
async def test_crash_at_claim(cluster: Cluster, tmp_path: Path, moment: str) -> None:
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler(*TYPES, "--crash-at", f"claim:{moment}")
    task = await cluster.tasks(scheduler).CreateTask(
        request("recorded", {"record_dir": str(records)}, idempotency_key=KEY)
    )
    # A worker connects with the task pending: its first claim ends the scheduler.
    await cluster.start_worker(*WORKER, scheduler=scheduler, wait=False)
    crashed_at = await _crashed(scheduler)
    scheduler = await cluster.restart_scheduler(scheduler, *TYPES)
    done = await wait_terminal(cluster.tasks(scheduler), task.id)
    finished = time.monotonic() - crashed_at
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
    if moment == "before-commit":
        assert _outcomes(done) == ["SUCCEEDED"], "a claim that never committed left a trace"
    else:
        # The committed lease reached nobody: it expires, and the task runs again.
        assert _outcomes(done) == ["WORKER_LOST", "SUCCEEDED"], _outcomes(done)
    runs = read_records(records)
    assert [r["outcome"] for r in runs] == ["succeeded"], runs
    report = check(
        cluster.database, acknowledged=[task.id], records=records, lease_ttl=LEASE_TTL,
        require_terminal=True,
    )  # fmt: skip
    print(
        f"\nclaim:{moment}: attempts {_outcomes(done)}, finished {finished:.2f} s after the "
        f"crash; checker ok ({report.tasks} task, {report.attempts} attempts)"
    )


@pytest.mark.parametrize("moment", ["before-commit", "after-commit"])
async def test_crash_at_end(cluster: Cluster, tmp_path: Path, moment: str) -> None:
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler(*TYPES, "--crash-at", f"end:{moment}")
    await cluster.start_worker(*WORKER, scheduler=scheduler)
    task = await cluster.tasks(scheduler).CreateTask(
        request("recorded", {"record_dir": str(records)}, idempotency_key=KEY)
    )
    # The worker runs it and sends the result: storing the result ends the scheduler.
    crashed_at = await _crashed(scheduler)
    scheduler = await cluster.restart_scheduler(scheduler, *TYPES)
    done = await wait_terminal(cluster.tasks(scheduler), task.id)
    finished = time.monotonic() - crashed_at
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
    runs = [r["outcome"] for r in read_records(records)]
    if moment == "before-commit":
        # The result was lost with the transaction: the lease expires and the task runs
        # again. It ran twice (at-least-once); the checker proves one completion counted.
        assert _outcomes(done) == ["WORKER_LOST", "SUCCEEDED"], _outcomes(done)
        assert runs == ["succeeded", "succeeded"], runs
    else:
        assert _outcomes(done) == ["SUCCEEDED"], _outcomes(done)
        assert runs == ["succeeded"], runs
    report = check(
        cluster.database, acknowledged=[task.id], records=records, lease_ttl=LEASE_TTL,
        require_terminal=True,
    )  # fmt: skip
    print(
        f"\nend:{moment}: attempts {_outcomes(done)}, {len(runs)} run(s), finished "
        f"{finished:.2f} s after the crash; checker ok ({report.tasks} task, "
        f"{report.attempts} attempts)"
    )
