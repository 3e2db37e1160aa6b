"""The timing and delivery promises, with real scheduler and worker processes."""

from __future__ import annotations

import signal
import time

from google.protobuf import duration_pb2, timestamp_pb2

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.tasks import micros, request, wait_terminal


async def test_run_at_is_not_early_and_starts_within_100ms(cluster: Cluster) -> None:
    await cluster.start_scheduler()
    await cluster.start_worker()
    tasks = cluster.tasks()
    created = []
    for delay in (2.0, 2.3, 2.6):
        due = time.time() + delay
        run_at = timestamp_pb2.Timestamp()
        run_at.FromMicroseconds(int(due * 1_000_000))
        created.append(
            await tasks.CreateTask(request("sum2", {"first": 1, "second": 1}, run_at=run_at))
        )
        assert created[-1].state == task_pb2.TASK_STATE_SCHEDULED
    for task in created:
        done = await wait_terminal(tasks, task.id)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED
        lateness = micros(done.attempt_history[0].started_at) - micros(task.run_at)
        assert 0 <= lateness <= 100_000, f"started {lateness} µs after run_at"


async def test_higher_priority_runs_first(cluster: Cluster) -> None:
    await cluster.start_scheduler("--task-types", "sum2")
    tasks = cluster.tasks()
    priorities = [0, 5, 1, 9, 3, 7]
    made = {}
    for p in priorities:
        task = await tasks.CreateTask(request("sum2", {"first": p, "second": 0}, priority=p))
        made[task.id] = p
    await cluster.start_worker("--slots", "1")  # one at a time: start order is the claim order
    finished = [await wait_terminal(tasks, task_id) for task_id in made]
    order = sorted(finished, key=lambda t: micros(t.started_at))
    assert [made[t.id] for t in order] == sorted(priorities, reverse=True)


async def test_retries_back_off_and_end_failed_with_history(cluster: Cluster) -> None:
    await cluster.start_scheduler()
    await cluster.start_worker()
    tasks = cluster.tasks()
    backoff = task_pb2.BackoffPolicy(
        initial=duration_pb2.Duration(nanos=300_000_000), multiplier=2.0, jitter=0.0
    )
    task = await tasks.CreateTask(
        request("cpu_process", {"fail": True, "iterations": 10}, max_attempts=3, backoff=backoff)
    )
    done = await wait_terminal(tasks, task.id)
    assert done.state == task_pb2.TASK_STATE_FAILED
    history = done.attempt_history
    assert [a.number for a in history] == [1, 2, 3]
    assert all(a.outcome == task_pb2.ATTEMPT_OUTCOME_FAILED and a.error for a in history)
    gaps = [micros(history[i + 1].started_at) - micros(history[i].finished_at) for i in range(2)]
    assert gaps[0] >= 300_000 and gaps[1] >= 600_000, gaps
    assert done.error == history[-1].error


async def test_worker_killed_mid_task_its_task_runs_again_elsewhere(cluster: Cluster) -> None:
    await cluster.start_scheduler()
    victim = await cluster.start_worker("--foo-seconds", "30", worker_id="victim")
    tasks = cluster.tasks()
    task = await tasks.CreateTask(request("foo", {"seconds": 3}))

    async def running_on_victim() -> bool:
        current = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
        return current.state == task_pb2.TASK_STATE_RUNNING and current.worker_id == "victim"

    await eventually(running_on_victim, message="running on the victim")
    victim.kill()
    await cluster.start_worker(worker_id="rescuer")
    done = await wait_terminal(tasks, task.id, timeout=30)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED
    assert [(a.worker_id, a.outcome) for a in done.attempt_history] == [
        ("victim", task_pb2.ATTEMPT_OUTCOME_WORKER_LOST),
        ("rescuer", task_pb2.ATTEMPT_OUTCOME_SUCCEEDED),
    ]


async def test_sigterm_on_a_worker_loses_nothing(cluster: Cluster) -> None:
    await cluster.start_scheduler()
    leaving = await cluster.start_worker("--slots", "4", worker_id="leaving")
    tasks = cluster.tasks()
    made = [await tasks.CreateTask(request("foo", {"seconds": 1})) for _ in range(8)]

    async def four_running() -> bool:
        listing = await tasks.ListTasks(
            task_service_pb2.ListTasksRequest(states=[task_pb2.TASK_STATE_RUNNING])
        )
        return len(listing.tasks) == 4

    await eventually(four_running, message="4 running on the leaving worker")
    leaving.signal(signal.SIGTERM)
    assert await leaving.wait_async(20) == 0
    await cluster.start_worker(worker_id="staying")
    for task in made:
        done = await wait_terminal(tasks, task.id, timeout=30)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED
        # Graceful: the leaving worker finished what it held; nothing counted as lost.
        assert all(a.outcome != task_pb2.ATTEMPT_OUTCOME_WORKER_LOST for a in done.attempt_history)
    assert "Foo" in leaving.stdout()


async def test_stale_result_after_sigstop_changes_nothing(cluster: Cluster) -> None:
    await cluster.start_scheduler()
    sleeper = await cluster.start_worker(worker_id="sleeper")
    tasks = cluster.tasks()
    task = await tasks.CreateTask(request("foo", {"seconds": 1.5}))

    async def leased() -> bool:
        current = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
        return current.state == task_pb2.TASK_STATE_RUNNING

    await eventually(leased, message="leased to the sleeper")
    sleeper.signal(signal.SIGSTOP)
    await cluster.start_worker(worker_id="awake")
    done = await wait_terminal(tasks, task.id, timeout=30)
    sleeper.signal(signal.SIGCONT)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED
    first, second = done.attempt_history
    assert first.worker_id == "sleeper" and first.outcome == task_pb2.ATTEMPT_OUTCOME_WORKER_LOST
    assert second.worker_id == "awake" and second.outcome == task_pb2.ATTEMPT_OUTCOME_SUCCEEDED
    # The sleeper wakes and finishes its handler; whatever it reports cannot change the task.
    await eventually(lambda: f"Foo {task.id}" in sleeper.stdout(), message="sleeper finished")
    after = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
    assert after.state == task_pb2.TASK_STATE_SUCCEEDED
    assert after.revision == done.revision and len(after.attempt_history) == 2


async def test_scheduler_sigkill_loses_no_acknowledged_task(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler("--task-types", "sum2")
    tasks = cluster.tasks()
    made = [await tasks.CreateTask(request("sum2", {"first": i, "second": 1})) for i in range(50)]
    scheduler.kill()
    restarted = await cluster.restart_scheduler(scheduler)
    tasks = cluster.tasks(restarted)
    await cluster.start_worker(scheduler=restarted)
    for i, task in enumerate(made):
        done = await wait_terminal(tasks, task.id)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED
        assert dict(done.result)["sum"] == i + 1
