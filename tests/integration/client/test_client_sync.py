"""The blocking Client against the real server; its calls run in a thread so that the
server, on the test's event loop, keeps serving."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import grpc
import pytest

import orchestrator_client as oc
from orchestrator.v1 import task_pb2
from orchestrator_client.protocol import CLIENT_METADATA_KEY

if TYPE_CHECKING:
    from conftest import FakeScheduler

FAST = oc.RetryPolicy(retries=3, initial=0.001, maximum=0.01)


async def test_sync_client_round_trip(scheduler: FakeScheduler) -> None:
    def use() -> list[str]:
        with oc.Client(scheduler.target, client_id="ops", retries=FAST) as client:
            task = client.create_task("foo", {"n": 1})
            scheduler.script.watch_states[task.id] = [
                task_pb2.TASK_STATE_RUNNING,
                task_pb2.TASK_STATE_SUCCEEDED,
            ]
            assert client.get_task(task.id).id == task.id
            assert [t.id for t in client.list_tasks().tasks] == [task.id]
            assert [t.id for t in client.iter_tasks(page_size=1)] == [task.id]
            states = [oc.state_name(e.task.state) for e in client.watch_task(task.id)]
            assert client.get_stats().connected_workers == 1
            return states

    states = await asyncio.to_thread(use)
    assert states == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert scheduler.script.calls[0].metadata[CLIENT_METADATA_KEY] == "ops"


async def test_sync_client_new_calls(scheduler: FakeScheduler) -> None:
    def use() -> tuple[oc.Task, str, int]:
        with oc.Client(scheduler.target, retries=FAST) as client:
            task = client.create_task(
                "foo",
                group="g",
                on_failure=oc.OnFailure.Value("ON_FAILURE_SKIP"),
                concurrency_key="acme",
                key_max_running=1,
            )
            summary = client.explain_task(task.id).summary
            limits = client.set_task_type_limits("foo", max_running=3).limits
            return task, summary, limits.max_running

    task, summary, max_running = await asyncio.to_thread(use)
    assert (task.on_failure, task.concurrency_key) == (task_pb2.ON_FAILURE_SKIP, "acme")
    request = scheduler.script.calls_of("CreateTask")[0].request
    assert request.concurrency_limits.max_running == 1
    assert summary == "It is queued."
    assert max_running == 3


async def test_sync_client_raises_typed_errors_and_retries(scheduler: FakeScheduler) -> None:
    scheduler.script.failures["GetStats"] = [grpc.StatusCode.UNAVAILABLE]

    def use() -> None:
        with oc.Client(scheduler.target, retries=FAST) as client:
            client.get_stats()
            with pytest.raises(oc.NotFound):
                client.get_task("missing")

    await asyncio.to_thread(use)
    assert len(scheduler.script.calls_of("GetStats")) == 2


async def test_sync_wait_for_task(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    scheduler.script.watch_states[task.id] = [task_pb2.TASK_STATE_CANCELLED]

    def use() -> task_pb2.Task:
        with oc.Client(scheduler.target) as client:
            return client.wait_for_task(task.id, timeout=5)

    assert (await asyncio.to_thread(use)).state == task_pb2.TASK_STATE_CANCELLED


async def test_leaving_a_sync_watch_early_ends_the_call(scheduler: FakeScheduler) -> None:
    for _ in range(3):
        scheduler.script.add_task(type="foo")

    def use() -> int:
        with oc.Client(scheduler.target) as client:
            events = client.watch_tasks()
            first = next(iter(events))
            events.close()
            return int(first.revision)

    assert await asyncio.to_thread(use) == 1


async def test_close_stops_the_loop_thread_and_a_new_call_restarts_it(
    scheduler: FakeScheduler,
) -> None:
    def use() -> tuple[int, int, int]:
        before = threading.active_count()
        client = oc.Client(scheduler.target)
        client.get_stats()
        during = threading.active_count()
        client.close()
        client.close()
        client.get_stats()
        client.close()
        return before, during, threading.active_count()

    before, during, after = await asyncio.to_thread(use)
    assert during == before + 1
    assert after == before


async def test_sync_client_inside_a_running_event_loop(scheduler: FakeScheduler) -> None:
    # Someone calling the blocking client from async code (a notebook, a web handler):
    # it must work, close included, although the calling thread runs a loop of its own.
    async def inside_a_loop() -> int:
        with oc.Client(scheduler.target) as client:
            return client.get_stats().connected_workers

    assert await asyncio.to_thread(asyncio.run, inside_a_loop()) == 1


async def test_sync_client_runs_tasks_and_manages_schedules(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_SCHEDULED)

    def use() -> tuple[list[str], list[str], str]:
        with oc.Client(scheduler.target, retries=FAST) as client:
            ran = client.run_task(task.id)
            client.create_task("foo", cache=True, cache_max_age=30)
            first = client.create_schedule("0 3 * * *", "report", {"n": 1}, schedule_id="a")
            client.create_schedule("*/5 * * * *", "report", catch_up="skip", priority=2)
            ids = [s.id for s in client.iter_schedules(page_size=1)]
            states = [
                oc.ScheduleState.Name(client.pause_schedule("a").state),
                oc.ScheduleState.Name(client.resume_schedule("a").state),
            ]
            client.delete_schedule("a")
            remaining = [s.id for s in client.list_schedules().schedules]
            assert client.get_schedule(remaining[0]).template.priority == 2
            assert first.template.payload["n"] == 1
            return ids, states + remaining, oc.state_name(ran.state)

    ids, states, ran = await asyncio.to_thread(use)
    assert ids[0] == "a" and len(ids) == 2
    assert states == ["SCHEDULE_STATE_PAUSED", "SCHEDULE_STATE_ACTIVE", ids[1]]
    assert ran == "PENDING"
    assert scheduler.script.calls_of("CreateTask")[0].request.cache_max_age.seconds == 30
    second = scheduler.script.calls_of("CreateSchedule")[1].request.schedule
    assert second.catch_up == oc.CatchUp.Value("CATCH_UP_SKIP")
