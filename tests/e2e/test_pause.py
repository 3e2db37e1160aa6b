"""Pausing and resuming a task type, with real scheduler and worker processes: a paused type
is not leased (other types are), what already runs finishes, the pause survives a restart of
the scheduler, and a resume lets everything waiting run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.observe import holds_for
from tests.support.polling import eventually
from tests.support.tasks import micros, request, wait_terminal

if TYPE_CHECKING:  # the async stub class exists only in the generated .pyi file
    from orchestrator.v1.admin_service_pb2_grpc import AdminServiceAsyncStub

PAUSED_TASKS = 3


async def task_type(admin: AdminServiceAsyncStub, name: str) -> admin_service_pb2.TaskType:
    listing = await admin.ListTaskTypes(admin_service_pb2.ListTaskTypesRequest())
    (found,) = [t for t in listing.task_types if t.name == name]
    return found


async def test_paused_type_is_not_leased_survives_a_restart_and_runs_once_resumed(
    cluster: Cluster,
) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker("--slots", "4", "--reconnect-max-delay", "0.5", worker_id="w1")
    tasks, admin = cluster.tasks(), cluster.admin()

    # A foo task that is already running when the type is paused.
    running = await tasks.CreateTask(request("foo", {"seconds": 1.5}))

    async def is_running() -> bool:
        task = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=running.id))
        return task.state == task_pb2.TASK_STATE_RUNNING

    await eventually(is_running, message="the first foo task running")

    paused = await admin.PauseTaskType(admin_service_pb2.PauseTaskTypeRequest(type="foo"))
    assert paused.name == "foo" and paused.state == admin_service_pb2.TASK_TYPE_STATE_PAUSED
    waiting = [
        await tasks.CreateTask(request("foo", {"seconds": 0.05})) for _ in range(PAUSED_TASKS)
    ]
    # Created after the foo tasks: it runs, so the worker is connected and leasing.
    other = await tasks.CreateTask(request("sum2", {"first": 2, "second": 3}))
    assert (await wait_terminal(tasks, other.id)).state == task_pb2.TASK_STATE_SUCCEEDED

    async def foo_tasks_untouched() -> str:
        for made in waiting:
            task = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=made.id))
            if task.state != task_pb2.TASK_STATE_PENDING or task.attempt_history:
                return f"paused task leased: {task}"
        return ""

    # An observation window (nothing to wait for: the point is that nothing happens).
    await holds_for(1.0, foo_tasks_untouched)

    # What was running when the type was paused finishes normally.
    first = await wait_terminal(tasks, running.id)
    assert first.state == task_pb2.TASK_STATE_SUCCEEDED
    assert [a.outcome for a in first.attempt_history] == [task_pb2.ATTEMPT_OUTCOME_SUCCEEDED]

    shown = await task_type(admin, "foo")
    assert shown.state == admin_service_pb2.TASK_TYPE_STATE_PAUSED
    assert shown.counts.pending == PAUSED_TASKS
    assert shown.counts.running == 0 and shown.counts.succeeded == 1
    assert shown.connected_workers == 1
    assert (await task_type(admin, "sum2")).state == admin_service_pb2.TASK_TYPE_STATE_ACTIVE

    # A graceful restart of the scheduler on the same port: the pause is stored, not in memory.
    # Its exit status is checked at the end, so that the pause is checked whatever it is.
    exit_status = scheduler.terminate(30)
    restarted = await cluster.restart_scheduler(scheduler)
    tasks, admin = cluster.tasks(restarted), cluster.admin(restarted)
    await cluster.wait_for_worker("w1", restarted)
    shown = await task_type(admin, "foo")
    assert shown.state == admin_service_pb2.TASK_TYPE_STATE_PAUSED
    assert shown.counts.pending == PAUSED_TASKS
    after_restart = await tasks.CreateTask(request("sum2", {"first": 4, "second": 4}))
    assert (await wait_terminal(tasks, after_restart.id)).state == task_pb2.TASK_STATE_SUCCEEDED
    await holds_for(0.5, foo_tasks_untouched)  # again, watching that nothing happens

    resumed_at = time.time()
    resumed = await admin.ResumeTaskType(admin_service_pb2.ResumeTaskTypeRequest(type="foo"))
    assert resumed.state == admin_service_pb2.TASK_TYPE_STATE_ACTIVE
    for made in waiting:
        done = await wait_terminal(tasks, made.id)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED
        (attempt,) = done.attempt_history
        assert attempt.worker_id == "w1"
        # Leased only after the resume (both clocks are this host's).
        assert micros(attempt.leased_at) >= int(resumed_at * 1e6) - 1000
    shown = await task_type(admin, "foo")
    assert shown.state == admin_service_pb2.TASK_TYPE_STATE_ACTIVE
    assert shown.counts.pending == 0 and shown.counts.succeeded == PAUSED_TASKS + 1
    # A graceful stop (SIGTERM, drained, "scheduler stopped" logged) is a success: status 0.
    assert exit_status == 0, f"the scheduler exited {exit_status} after a clean SIGTERM"
