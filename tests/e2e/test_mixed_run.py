"""The mixed run of issue 3: three scheduler processes on one database, four workers spread
over them, 5,000 tasks with groups, priorities, limits, near-future run_at and 10% failing
once. Every promise is checked from two records: the scheduler's (attempt history) and the
workers' own (the recording handler's JSON lines).
"""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.recording_handlers import read_records
from tests.support.tasks import micros, request

TASKS = 5_000
GROUPS = 100
GROUP_SIZE = 10
LIMITED_MAX_RUNNING = 3
LIMITED_PER_SECOND = 100
KEY_MAX_RUNNING = 2
MODULE = ("--module", "tests.support.recording_handlers")


def plan(
    record_dir: Path, now: float
) -> list[tuple[task_service_pb2.CreateTaskRequest, dict[str, Any]]]:
    """The 5,000 creates, in creation order, each with what the test expects of it."""
    rng = random.Random(3)
    items = []
    group_slots = [f"g{g}" for g in range(GROUPS) for _ in range(GROUP_SIZE)]
    rng.shuffle(group_slots)
    for i in range(TASKS):
        group = group_slots[i] if i < len(group_slots) else ""
        limited = i % 10 == 3
        keyed = i % 10 == 7
        fail_once = i % 10 == 5
        delay = rng.uniform(0.5, 3.0) if i % 10 == 1 else 0.0
        payload = {"record_dir": str(record_dir), "sleep": 0.003, "fail_once": fail_once}
        fields: dict[str, Any] = {"priority": rng.randint(0, 10), "group": group}
        if delay:
            run_at = timestamp_pb2.Timestamp()
            run_at.FromMicroseconds(int((now + delay) * 1e6))
            fields["run_at"] = run_at
        if keyed:
            fields["concurrency_key"] = "k1"
            fields["concurrency_limits"] = task_pb2.ConcurrencyLimits(max_running=KEY_MAX_RUNNING)
        if fail_once:
            fields["backoff"] = task_pb2.BackoffPolicy(jitter=0.0)
            fields["backoff"].initial.FromMilliseconds(50)
        kind = "recorded_limited" if limited else "recorded"
        items.append((request(kind, payload, **fields), {"fail_once": fail_once, "group": group}))
    return items


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = peak = 0
    for _, step in events:  # ends sort before starts at the same instant
        level += step
        peak = max(peak, level)
    return peak


def max_in_window(times: list[int], window: int) -> int:
    times = sorted(times)
    best, left = 0, 0
    for right, t in enumerate(times):
        while t - times[left] >= window:
            left += 1
        best = max(best, right - left + 1)
    return best


async def test_three_schedulers_four_workers_five_thousand_tasks(
    cluster: Cluster, tmp_path: Path
) -> None:
    schedulers = [await cluster.start_scheduler("--task-types", "recorded,recorded_limited")]
    for _ in range(2):
        schedulers.append(await cluster.start_scheduler())
    admin = cluster.admin(schedulers[1])
    await admin.SetTaskTypeLimits(
        admin_service_pb2.SetTaskTypeLimitsRequest(
            type="recorded_limited",
            limits=task_pb2.ConcurrencyLimits(
                max_running=LIMITED_MAX_RUNNING, max_per_second=LIMITED_PER_SECOND
            ),
        )
    )
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    for i in range(4):
        await cluster.start_worker(*MODULE, "--slots", "8", scheduler=schedulers[i % 3])

    stubs = [cluster.tasks(s) for s in schedulers]
    items = plan(record_dir, time.time())
    created: list[task_pb2.Task] = []
    started = time.monotonic()
    for n, start in enumerate(range(0, TASKS, 250)):  # in order, spread over the schedulers
        batch = items[start : start + 250]
        response = await stubs[n % 3].BatchCreateTasks(
            task_service_pb2.BatchCreateTasksRequest(tasks=[r for r, _ in batch])
        )
        created.extend(response.tasks)
    expected = {task.id: meta for task, (_, meta) in zip(created, items, strict=True)}

    async def all_done() -> bool:
        stats = await cluster.admin(schedulers[2]).GetStats(admin_service_pb2.GetStatsRequest())
        return stats.totals.succeeded == TASKS

    await eventually(all_done, timeout=240, interval=0.5, message="all 5,000 tasks succeeded")
    elapsed = time.monotonic() - started

    # The scheduler's record: every task with its attempt history.
    tasks: dict[str, task_pb2.Task] = {}
    token = ""
    while True:
        page = await stubs[0].ListTasks(
            task_service_pb2.ListTasksRequest(
                page_size=1000, page_token=token, view=task_pb2.TASK_VIEW_FULL
            )
        )
        tasks.update((t.id, t) for t in page.tasks)
        token = page.next_page_token
        if not token:
            break
    assert set(tasks) == set(expected)
    assert all(t.state == task_pb2.TASK_STATE_SUCCEEDED for t in tasks.values())

    # The workers' record: exactly one successful run per task; a second run only for the
    # tasks that fail once on purpose, and never a repeated attempt.
    runs = read_records(record_dir)
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_task[run["task_id"]].append(run)
    for task_id, meta in expected.items():
        task_runs = sorted(by_task[task_id], key=lambda r: r["attempt"])
        assert [r["outcome"] for r in task_runs] == (
            ["failed", "succeeded"] if meta["fail_once"] else ["succeeded"]
        ), (task_id, task_runs, tasks[task_id].attempt_history)
        assert len(tasks[task_id].attempt_history) == len(task_runs)

    # Groups ran one at a time, in creation order.
    by_group: dict[str, list[str]] = defaultdict(list)
    for task in created:
        if expected[task.id]["group"]:
            by_group[expected[task.id]["group"]].append(task.id)
    for group, ids in by_group.items():
        for before, after in itertools.pairwise(ids):
            done = max(r["end"] for r in by_task[before])
            assert min(r["start"] for r in by_task[after]) >= done, (group, before, after)

    # Limits held, from the scheduler's lease and finish times.
    def intervals(select: Any) -> list[tuple[int, int]]:
        return [
            (micros(a.leased_at), micros(a.finished_at))
            for t in tasks.values() if select(t)
            for a in t.attempt_history
        ]  # fmt: skip

    limited = intervals(lambda t: t.type == "recorded_limited")
    assert max_overlap(limited) <= LIMITED_MAX_RUNNING
    assert max_in_window([s for s, _ in limited], 1_000_000) <= LIMITED_PER_SECOND
    assert max_overlap(intervals(lambda t: t.concurrency_key == "k1")) <= KEY_MAX_RUNNING

    # Not before run_at, by either clock.
    lateness = []
    for task in tasks.values():
        first = task.attempt_history[0]
        assert micros(first.leased_at) >= micros(task.run_at)
        assert min(r["start"] for r in by_task[task.id]) * 1e6 >= micros(task.run_at) - 1000
        if task.run_at.seconds and micros(task.run_at) > micros(task.created_at) + 100_000:
            lateness.append((micros(first.started_at) - micros(first.due_at)) / 1000)
    lateness.sort()
    print(
        f"\nmixed run: {TASKS} tasks in {elapsed:.1f} s ({TASKS / elapsed:.0f}/s); "
        f"lateness of run_at tasks p50 {statistics.median(lateness):.1f} ms, "
        f"p99 {lateness[int(len(lateness) * 0.99)]:.1f} ms, max {lateness[-1]:.1f} ms "
        f"({len(lateness)} tasks)"
    )
