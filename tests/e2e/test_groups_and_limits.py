"""Sequential groups and concurrency/rate limits through real processes, checked from the
workers' own records (the recording handler) and the scheduler's attempt history.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

from aiohttp import web

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.support.clis import Taskctl
from tests.support.cluster import Cluster
from tests.support.intervals import max_in_window, max_overlap, overlaps
from tests.support.observe import holds_for
from tests.support.polling import eventually
from tests.support.recording_handlers import read_records
from tests.support.tasks import micros, request, wait_terminal

MODULE = ("--module", "tests.support.recording_handlers")
BLOCK, SKIP = task_pb2.ON_FAILURE_BLOCK, task_pb2.ON_FAILURE_SKIP


@contextlib.asynccontextmanager
async def site_on(sock: socket.socket) -> AsyncIterator[None]:
    """Serve ``GET /ok`` on ``sock``, bound but not listening until now (so connections to it
    were refused before, and succeed from here on)."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def test_groups_block_skip_and_run_side_by_side(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.start_scheduler()
    # The "retried" group's bar task fetches from loopback: allowed explicitly.
    await cluster.start_worker(
        *MODULE, "--slots", "4", "--fetch-allow", "127.0.0.1", worker_id="w1"
    )
    tasks = cluster.tasks()
    record_dir = tmp_path / "records"
    record_dir.mkdir()

    async def create(group: str, payload: dict[str, Any] | None = None, **fields: Any) -> str:
        kind = fields.pop("type", "recorded")
        body = {"record_dir": str(record_dir), **(payload or {})}
        task = await tasks.CreateTask(request(kind, body, group=group, **fields))
        return task.id

    async def get(task_id: str) -> task_pb2.Task:
        return await tasks.GetTask(task_service_pb2.GetTaskRequest(id=task_id))

    async def explain(task_id: str) -> task_service_pb2.ExplainTaskResponse:
        return await tasks.ExplainTask(task_service_pb2.ExplainTaskRequest(id=task_id))

    failing = {"fail_once": True}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/ok"

        # "retried": its 2nd task fetches a URL that refuses connections until the site is up.
        retried = [await create("retried")]
        retried.append(
            await create("retried", {"url": url}, type="bar", max_attempts=1, on_failure=BLOCK)
        )
        retried += [await create("retried") for _ in range(3)]
        # "deleted": its 2nd task fails every first attempt (and a retry starts at attempt 1).
        deleted = [await create("deleted")]
        deleted.append(await create("deleted", failing, max_attempts=1, on_failure=BLOCK))
        deleted += [await create("deleted") for _ in range(3)]
        # "skipping": its 2nd task fails, and the group goes on without it.
        skipping = [await create("skipping")]
        skipping.append(await create("skipping", failing, max_attempts=1, on_failure=SKIP))
        skipping += [await create("skipping") for _ in range(3)]
        # Two groups of slow tasks: each one at a time, both at the same time.
        slow = {"sleep": 0.3}
        left = [await create("left", slow) for _ in range(3)]
        right = [await create("right", slow) for _ in range(3)]

        for task_id in [*skipping, *left, *right]:
            await wait_terminal(tasks, task_id)
        blockers = {"retried": retried[1], "deleted": deleted[1]}
        for blocker in blockers.values():
            done = await wait_terminal(tasks, blocker)
            assert done.state == task_pb2.TASK_STATE_FAILED, done
            assert done.on_failure == BLOCK

        # The failed task blocks the rest of its group: they stay PENDING, never leased, and
        # ExplainTask names the failed task. (An observation window: nothing must happen.)
        held = [*retried[2:], *deleted[2:]]

        async def still_held() -> str:
            for task_id in held:
                task = await get(task_id)
                if task.state != task_pb2.TASK_STATE_PENDING or task.attempt_history:
                    return f"a task behind a failed one was leased: {task}"
            return ""

        await holds_for(0.5, still_held)
        for group, members in (("retried", retried), ("deleted", deleted)):
            for position, task_id in enumerate(members[2:]):
                why = await explain(task_id)
                first = why.reasons[0]
                assert first.code == task_service_pb2.REASON_CODE_GROUP_BLOCKED, why
                assert first.blocking_task_id == blockers[group], why
                assert f'"{group}"' in first.message and "FAILED" in first.message, why
                if position:
                    assert f"{position} more before it" in first.message, why

        # Retried once the URL answers: the blocker succeeds and the group goes on.
        async with site_on(sock):
            await tasks.RetryTask(task_service_pb2.RetryTaskRequest(id=retried[1]))
            for task_id in retried[2:]:
                assert (await wait_terminal(tasks, task_id)).state == task_pb2.TASK_STATE_SUCCEEDED
    bar = await get(retried[1])
    assert bar.state == task_pb2.TASK_STATE_SUCCEEDED
    assert [a.outcome for a in bar.attempt_history] == [
        task_pb2.ATTEMPT_OUTCOME_FAILED,
        task_pb2.ATTEMPT_OUTCOME_SUCCEEDED,
    ]

    # Retried but failing again: still blocked, by the same task.
    await tasks.RetryTask(task_service_pb2.RetryTaskRequest(id=deleted[1]))
    again = await eventually(
        lambda: _failed_twice(get(deleted[1])), message="the retried blocker failed again"
    )
    assert again.state == task_pb2.TASK_STATE_FAILED
    for task_id in deleted[2:]:
        task = await get(task_id)
        assert task.state == task_pb2.TASK_STATE_PENDING and not task.attempt_history, task
    assert (await explain(deleted[2])).reasons[0].blocking_task_id == deleted[1]
    # Deleted: the group goes on.
    await tasks.DeleteTask(task_service_pb2.DeleteTaskRequest(id=deleted[1]))
    for task_id in deleted[2:]:
        assert (await wait_terminal(tasks, task_id)).state == task_pb2.TASK_STATE_SUCCEEDED

    states = {t: (await get(t)).state for t in skipping}
    assert states[skipping[1]] == task_pb2.TASK_STATE_FAILED
    assert all(s == task_pb2.TASK_STATE_SUCCEEDED for t, s in states.items() if t != skipping[1])

    # From the workers' records (the scheduler's history for the bar task, which keeps none):
    # each group ran one task at a time, in creation order.
    runs = read_records(record_dir)
    spans: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        spans.setdefault(run["task_id"], []).append((run["start"], run["end"]))
    spans[retried[1]] = [
        (micros(a.started_at) / 1e6, micros(a.finished_at) / 1e6) for a in bar.attempt_history
    ]
    assert len(spans[deleted[1]]) == 2  # its first attempt, then the retry's
    for name, members in (
        ("retried", retried),
        ("deleted", [deleted[0], *deleted[2:]]),
        ("skipping", skipping),
        ("left", left),
        ("right", right),
    ):
        for before, after in itertools.pairwise(members):
            ended = max(end for _, end in spans[before])
            started = min(start for start, _ in spans[after])
            assert started >= ended, (name, before, after, spans[before], spans[after])
    assert max(e for _, e in spans[deleted[1]]) <= min(s for s, _ in spans[deleted[2]])
    # ... while different groups ran side by side.
    left_runs = [span for t in left for span in spans[t]]
    right_runs = [span for t in right for span in spans[t]]
    assert overlaps(left_runs, right_runs), (left_runs, right_runs)


async def _failed_twice(task: Awaitable[task_pb2.Task]) -> task_pb2.Task | None:
    got = await task
    done = got.state == task_pb2.TASK_STATE_FAILED and len(got.attempt_history) == 2
    return got if done else None


async def test_type_key_and_rate_limits_hold(cluster: Cluster, tmp_path: Path) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker(*MODULE, "--slots", "8", worker_id="w1")
    tasks = cluster.tasks()
    taskctl = Taskctl(scheduler.grpc_address)
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    payload = {"record_dir": str(record_dir), "sleep": 0.1}

    # A type limit set with taskctl, and (at the same time) a key shared by two types.
    limited = await taskctl.ok("limits", "recorded_limited", "--max-running", "2")
    assert limited["limits"]["max_running"] == 2
    key_limits = task_pb2.ConcurrencyLimits(max_running=1)
    keyed_request = {"concurrency_key": "tenant-7", "concurrency_limits": key_limits}
    keyed_payload = {**payload, "sleep": 0.05}
    made = await tasks.BatchCreateTasks(
        task_service_pb2.BatchCreateTasksRequest(
            tasks=[request("recorded_limited", payload) for _ in range(20)]
            + [
                request(kind, keyed_payload, **keyed_request)
                for kind in ["recorded", "recorded_limited"] * 6
            ]
        )
    )
    type_ids = {t.id for t in made.tasks[:20]}
    key_ids = {t.id for t in made.tasks[20:]}
    for task_id in [*type_ids, *key_ids]:
        assert (await wait_terminal(tasks, task_id)).state == task_pb2.TASK_STATE_SUCCEEDED

    runs = read_records(record_dir)
    of_type = [(r["start"], r["end"]) for r in runs if r["type"] == "recorded_limited"]
    of_key = [(r["start"], r["end"]) for r in runs if r["task_id"] in key_ids]
    assert len(of_type) == 26 and len(of_key) == 12
    assert max_overlap(of_type) == 2, sorted(of_type)  # reached, never passed
    assert max_overlap(of_key) == 1, sorted(of_key)
    assert {r["type"] for r in runs if r["task_id"] in key_ids} == {"recorded", "recorded_limited"}

    # A rate limit instead: at most 5 starts in any second, so 15 tasks take two seconds.
    rated = await taskctl.ok(
        "limits", "recorded_limited", "--max-running", "0", "--max-per-second", "5"
    )
    assert rated["limits"].get("max_running", 0) == 0 and rated["limits"]["max_per_second"] == 5
    started = time.monotonic()
    batch = await tasks.BatchCreateTasks(
        task_service_pb2.BatchCreateTasksRequest(
            tasks=[request("recorded_limited", {**payload, "sleep": 0.01}) for _ in range(15)]
        )
    )
    last = batch.tasks[-1].id

    async def rate_limited() -> bool:
        why = await tasks.ExplainTask(task_service_pb2.ExplainTaskRequest(id=last))
        codes = [r.code for r in why.reasons]
        return task_service_pb2.REASON_CODE_RATE_LIMIT in codes

    await eventually(rate_limited, message="the last task held back by the rate limit")
    done = [await wait_terminal(tasks, t.id) for t in batch.tasks]
    elapsed = time.monotonic() - started
    leased = [micros(a.leased_at) for t in done for a in t.attempt_history]
    assert len(leased) == 15
    assert max_in_window(leased, 1_000_000) <= 5, sorted(leased)
    assert max(leased) - min(leased) >= 2_000_000, sorted(leased)
    assert elapsed >= 2.0, elapsed
