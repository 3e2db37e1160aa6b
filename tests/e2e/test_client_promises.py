"""What a caller relies on, with two scheduler processes on one database: idempotent
creates that race, the cache's single flight, resumable watches, progress and run-now."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from google.protobuf import timestamp_pb2

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.recording_handlers import read_records
from tests.support.streams import read_message
from tests.support.tasks import request, wait_terminal

MODULE = ("--module", "tests.support.recording_handlers")
TYPES = ("--task-types", "recorded,progressing,sum2")


async def test_racing_creates_with_one_key_on_two_schedulers_make_one_task(
    cluster: Cluster,
) -> None:
    a = await cluster.start_scheduler(*TYPES)
    b = await cluster.start_scheduler()
    stubs = [cluster.tasks(a), cluster.tasks(b)]
    metadata = (("orchestrator-client", "billing"),)
    answers = await asyncio.gather(
        *(
            stubs[i % 2].CreateTask(
                request("sum2", {"first": i, "second": 0}, idempotency_key="invoice-7"),
                metadata=metadata,
            )
            for i in range(40)
        )
    )
    assert len({t.id for t in answers}) == 1
    listing = await stubs[0].ListTasks(task_service_pb2.ListTasksRequest(client="billing"))
    assert len(listing.tasks) == 1
    # Another client's key is its own.
    other = await stubs[1].CreateTask(
        request("sum2", idempotency_key="invoice-7"), metadata=(("orchestrator-client", "ops"),)
    )
    assert other.id != answers[0].id and other.client == "ops"


async def test_identical_cached_tasks_on_two_schedulers_run_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    a = await cluster.start_scheduler(*TYPES)
    b = await cluster.start_scheduler()
    records = tmp_path / "records"
    records.mkdir()
    await cluster.start_worker(*MODULE, scheduler=a)
    await cluster.start_worker(*MODULE, scheduler=b)
    stubs = [cluster.tasks(a), cluster.tasks(b)]
    payload = {"record_dir": str(records), "sleep": 0.5}
    made = await asyncio.gather(
        *(stubs[i % 2].CreateTask(request("recorded", payload, cache=True)) for i in range(10))
    )
    done = [await wait_terminal(stubs[0], t.id) for t in made]
    assert all(t.state == task_pb2.TASK_STATE_SUCCEEDED for t in done)
    runs = read_records(records)
    assert len(runs) == 1, f"identical cached tasks ran {len(runs)} times"
    leader = runs[0]["task_id"]
    assert {dict(t.result)["ran_on"] for t in done} == {runs[0]["worker_id"]}
    followers = [t for t in done if t.id != leader]
    assert all(t.cached and t.cached_from == leader for t in followers)
    # Later, an identical create gets the result at once, without running.
    again = await stubs[1].CreateTask(request("recorded", payload, cache=True))
    assert again.state == task_pb2.TASK_STATE_SUCCEEDED and again.cached
    assert len(read_records(records)) == 1


async def test_list_then_watch_from_another_scheduler_misses_nothing(
    cluster: Cluster,
) -> None:
    a = await cluster.start_scheduler(*TYPES)
    b = await cluster.start_scheduler()
    await cluster.start_worker(scheduler=b)
    watcher, writer = cluster.tasks(a), cluster.tasks(b)
    first = [await writer.CreateTask(request("sum2", {"first": i, "second": 1})) for i in range(5)]
    listing = await watcher.ListTasks(task_service_pb2.ListTasksRequest())
    later = [await writer.CreateTask(request("sum2", {"first": i, "second": 2})) for i in range(5)]
    stream = watcher.WatchTasks(
        task_service_pb2.WatchTasksRequest(since_revision=listing.revision, types=["sum2"])
    )
    seen: dict[str, list[int]] = {}
    revisions: list[tuple[int, str]] = []
    # Tasks that were not finished in the listing must finish in the watch, like the later ones.
    listed = {t.id: t.state for t in listing.tasks}
    wanted = {t.id for t in later} | {
        t.id for t in first if listed.get(t.id) != task_pb2.TASK_STATE_SUCCEEDED
    }

    def finished() -> bool:
        return all(seen.get(i) and seen[i][-1] == task_pb2.TASK_STATE_SUCCEEDED for i in wanted)

    async def collect() -> None:
        while not finished():
            event = await read_message(stream, task_service_pb2.TaskEvent)
            seen.setdefault(event.task.id, []).append(event.task.state)
            revisions.append((event.revision, event.task.id))

    await asyncio.wait_for(collect(), 30)
    stream.cancel()
    assert revisions == sorted(revisions) and len(revisions) == len(set(revisions))
    early = [(r, task_id) for r, task_id in revisions if r <= listing.revision]
    assert not early, f"events at or before the listing's revision {listing.revision}: {early}"
    # Nothing finished before the listing shows up again.
    done_before = {i for i, state in listed.items() if state == task_pb2.TASK_STATE_SUCCEEDED}
    assert not done_before & set(seen)


async def test_progress_and_run_now_end_to_end(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.start_scheduler(*TYPES)
    records = tmp_path / "records"
    records.mkdir()
    await cluster.start_worker(*MODULE)
    tasks = cluster.tasks()
    task = await tasks.CreateTask(
        request("progressing", {"record_dir": str(records), "pause": 0.3})
    )
    stream = tasks.WatchTask(task_service_pb2.WatchTaskRequest(id=task.id))
    percents: list[float] = []
    async for event in stream:
        if event.task.HasField("progress") and event.task.progress.HasField("percent"):
            percents.append(event.task.progress.percent)
        if event.task.state == task_pb2.TASK_STATE_SUCCEEDED:
            final = event.task
    assert percents == sorted(percents) and 75 in percents and len(set(percents)) >= 2
    assert final.progress.message == "step 3" and dict(final.progress.details) == {"step": 3}

    run_at = timestamp_pb2.Timestamp()
    run_at.FromSeconds(int(time.time()) + 3600)
    later = await tasks.CreateTask(request("recorded", {"record_dir": str(records)}, run_at=run_at))
    assert later.state == task_pb2.TASK_STATE_SCHEDULED
    await tasks.RunTask(task_service_pb2.RunTaskRequest(id=later.id))
    done = await wait_terminal(tasks, later.id)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED

    async def ran() -> bool:
        return any(r["task_id"] == later.id for r in read_records(records))

    await eventually(ran, message="the task ran")
