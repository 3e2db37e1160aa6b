"""Measured punctuality with real processes: every attempt records when it was due, leased and
started (the worker's own start time); the task's lateness and GetStats' lateness summary
follow from them, and ``taskctl stats`` shows it.
"""

from __future__ import annotations

import time

from google.protobuf import duration_pb2, timestamp_pb2

from orchestrator.v1 import admin_service_pb2, task_pb2
from tests.support.clis import Taskctl
from tests.support.cluster import Cluster
from tests.support.commands import parse_time
from tests.support.tasks import micros, request, wait_terminal

DELAYS = (1.5, 1.7, 1.9)


def duration_micros(duration: duration_pb2.Duration) -> int:
    return duration.seconds * 1_000_000 + duration.nanos // 1000


async def test_due_leased_started_and_lateness(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker()
    tasks, admin = cluster.tasks(), cluster.admin()
    now = time.time()
    made = []
    for n, delay in enumerate(DELAYS):
        run_at = timestamp_pb2.Timestamp()
        run_at.FromMicroseconds(int((now + delay) * 1e6))
        made.append(
            await tasks.CreateTask(request("sum2", {"first": n, "second": 1}, run_at=run_at))
        )
    assert all(t.state == task_pb2.TASK_STATE_SCHEDULED for t in made)

    lateness = []
    first_starts = []  # (Task.started_at, its first attempt's started_at), checked at the end
    for created in made:
        done = await wait_terminal(tasks, created.id)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED
        (attempt,) = done.attempt_history
        due = micros(created.run_at)
        assert micros(attempt.due_at) == due
        assert micros(attempt.leased_at) >= micros(attempt.due_at)
        # started_at is the worker's report of its handler's start: after the lease, before
        # the end the scheduler recorded.
        assert (
            micros(attempt.leased_at) <= micros(attempt.started_at) <= micros(attempt.finished_at)
        )
        first_starts.append((micros(done.started_at), micros(attempt.started_at)))
        assert done.HasField("lateness")
        late = duration_micros(done.lateness)
        assert late == micros(attempt.started_at) - due
        assert 0 <= late < 1_000_000, late
        lateness.append(late)

    stats = await admin.GetStats(admin_service_pb2.GetStatsRequest())
    assert stats.lateness_samples >= len(DELAYS)
    p50, p99, worst = (
        duration_micros(stats.lateness_p50),
        duration_micros(stats.lateness_p99),
        duration_micros(stats.lateness_max),
    )
    assert p50 <= p99 <= worst, (p50, p99, worst)
    assert worst >= max(lateness), (worst, lateness)  # every start here is one of the samples

    taskctl = Taskctl(scheduler.grpc_address)
    shown = await taskctl.ok("stats")
    assert shown["lateness_samples"] >= len(DELAYS)
    assert shown["lateness_max"].endswith("s")
    for name in ("lateness_p50", "lateness_p99", "lateness_max"):
        assert shown[name] == getattr(stats, name).ToJsonString(), name
    table = await taskctl("stats", json_mode=False)
    assert table.returncode == 0, table
    (line,) = [line for line in table.stdout.splitlines() if "lateness" in line]
    assert "p50" in line and "p99" in line and "max" in line, line
    assert f"({stats.lateness_samples} starts)" in line, line

    # taskctl get shows the task's own lateness.
    got = await taskctl.ok("get", made[0].id)
    assert parse_time(got["attempt_history"][0]["due_at"]) == parse_time(got["run_at"])
    assert got["lateness"].endswith("s") and not got["lateness"].startswith("-")

    # Task.started_at is "Start of the first attempt", and an attempt's start is the worker's
    # report once it has answered; Task.lateness ("first start minus first due time") is
    # computed from that report, so the task's own started_at must agree with it.
    for task_started, attempt_started in first_starts:
        assert task_started == attempt_started, (
            f"Task.started_at {task_started} is not its first attempt's started_at "
            f"{attempt_started} (it stays the lease time, {attempt_started - task_started} µs "
            "earlier), so lateness != started_at - run_at"
        )
