"""``orchestrator-scheduler migrate`` and ``copy``, as an operator runs them: real processes,
a real SQLite file and a real PostgreSQL server.

The copy test moves a database that a scheduler and a worker really used (tasks succeeded,
failed after retries, scheduled for later, in a group, labelled, deleted; a schedule; an
idempotency key) and checks that a scheduler on PostgreSQL answers as the SQLite one did."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess
from tests.support.streams import read_message
from tests.support.tasks import request, wait_terminal

COMMAND = (sys.executable, "-m", "scheduler_service")
FULL = task_pb2.TASK_VIEW_FULL


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=60, check=False
    )


async def _run_async(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *COMMAND, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# -- migrate ---------------------------------------------------------------------------------


def test_migrate_a_new_sqlite_file_then_finds_it_current(tmp_path: Path) -> None:
    database = tmp_path / "new" / "orchestrator.db"
    first = _run("migrate", "--database", str(database))
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial.sql" in first.stdout
    assert "migration(s) applied" in first.stdout
    assert database.is_file()
    again = _run("migrate", "--database", f"sqlite:///{database}")
    assert again.returncode == 0, again.stderr
    assert "applied" not in again.stdout.replace("nothing to apply", "")
    assert "the schema is current" in again.stdout


def test_migrate_reads_the_database_from_the_environment_and_config_file(
    tmp_path: Path,
) -> None:
    config = tmp_path / "scheduler.toml"
    config.write_text(f'database = "{tmp_path / "from_config.db"}"\nlisten = "127.0.0.1:0"\n')
    done = _run("migrate", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "from_config.db").is_file()


def test_migrate_a_new_postgres_database_then_finds_it_current(postgres_url: str) -> None:
    first = _run("migrate", "--database", postgres_url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial.sql" in first.stdout
    again = _run("migrate", "--database", postgres_url)
    assert again.returncode == 0, again.stderr
    assert "the schema is current" in again.stdout


def test_migrate_an_unreachable_server_exits_naming_it_without_the_password() -> None:
    done = _run("migrate", "--database", "postgresql://me:s3cret@127.0.0.1:1/tasks")
    assert done.returncode == 1
    assert "127.0.0.1:1/tasks" in done.stderr
    assert "s3cret" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_migrate_a_bad_value_exits_non_zero_naming_it() -> None:
    done = _run("migrate", "--database", "mysql://db/tasks")
    assert done.returncode == 1
    assert "mysql://db/tasks" in done.stderr


# -- copy ------------------------------------------------------------------------------------


def _stop(process: ManagedProcess) -> None:
    process.signal(signal.SIGTERM)
    assert process.wait(20) == 0, process.dump()


async def _all_tasks(stub: object) -> list[task_pb2.Task]:
    listing = await stub.ListTasks(  # type: ignore[attr-defined]
        task_service_pb2.ListTasksRequest(page_size=1000, view=FULL)
    )
    return list(listing.tasks)


@pytest.mark.sqlite_only
@pytest.mark.timeout(150)
async def test_copy_sqlite_into_postgres_keeps_every_answer(
    cluster: Cluster, postgres_url: str
) -> None:
    sqlite_scheduler = await cluster.start_scheduler()
    worker = await cluster.start_worker()
    tasks, admin = cluster.tasks(sqlite_scheduler), cluster.admin(sqlite_scheduler)

    succeeded = await tasks.CreateTask(
        request("sum2", {"first": 2, "second": 3}, labels={"team": "blue"}, idempotency_key="k1")
    )
    backoff = task_pb2.BackoffPolicy(initial=duration_pb2.Duration(nanos=100_000_000))
    failed = await tasks.CreateTask(
        request("cpu_process", {"fail": True, "iterations": 10}, max_attempts=2, backoff=backoff)
    )
    grouped = [
        await tasks.CreateTask(request("sum2", {"first": i, "second": 0}, group="g1"))
        for i in range(3)
    ]
    doomed = await tasks.CreateTask(request("sum2", {"first": 1, "second": 1}))
    for task in [succeeded, failed, *grouped, doomed]:
        await wait_terminal(tasks, task.id)
    old_revision = (await tasks.ListTasks(task_service_pb2.ListTasksRequest())).revision
    await tasks.DeleteTask(task_service_pb2.DeleteTaskRequest(id=doomed.id))
    due = timestamp_pb2.Timestamp()
    due.FromMicroseconds(int((time.time() + 20) * 1_000_000))
    later = await tasks.CreateTask(
        request("sum2", {"first": 40, "second": 2}, run_at=due, labels={"team": "red"})
    )
    schedule = await admin.CreateSchedule(
        admin_service_pb2.CreateScheduleRequest(
            schedule_id="yearly",
            schedule=admin_service_pb2.Schedule(
                cron="0 0 1 1 *", template=task_service_pb2.CreateTaskRequest(type="sum2")
            ),
        )
    )

    before = await _all_tasks(tasks)
    stats_before = await admin.GetStats(admin_service_pb2.GetStatsRequest())
    assert {t.id for t in before} == {succeeded.id, failed.id, later.id} | {t.id for t in grouped}
    failed_before = next(t for t in before if t.id == failed.id)
    assert failed_before.state == task_pb2.TASK_STATE_FAILED and failed_before.attempts == 2
    _stop(worker)
    _stop(sqlite_scheduler)

    code, out, err = await _run_async("copy", "--from", str(cluster.database), "--to", postgres_url)
    assert code == 0, err
    assert "tasks: 6 rows" in out and "deleted_tasks: 1 rows" in out and "schedules: 1 rows" in out

    pg_scheduler = await cluster.start_scheduler("--database", postgres_url)
    tasks, admin = cluster.tasks(pg_scheduler), cluster.admin(pg_scheduler)
    after = await _all_tasks(tasks)
    assert [t.id for t in after] == [t.id for t in before]
    for old, new in zip(before, after, strict=True):
        assert new == old, f"{old.id} differs after the copy"
    for task in before:
        got = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
        assert got == task
    stats_after = await admin.GetStats(admin_service_pb2.GetStatsRequest())
    for name in ("totals", "by_type", "retries", "over_retry_limit", "most_retried"):
        assert getattr(stats_after, name) == getattr(stats_before, name), name
    blue = await tasks.ListTasks(task_service_pb2.ListTasksRequest(labels={"team": "blue"}))
    assert [t.id for t in blue.tasks] == [succeeded.id]
    in_group = await tasks.ListTasks(task_service_pb2.ListTasksRequest(group="g1"))
    assert {t.id for t in in_group.tasks} == {t.id for t in grouped}
    got_schedule = await admin.GetSchedule(admin_service_pb2.GetScheduleRequest(id="yearly"))
    assert got_schedule == schedule

    # The same key returns the first task, not a new one.
    again = await tasks.CreateTask(
        request("sum2", {"first": 2, "second": 3}, labels={"team": "blue"}, idempotency_key="k1")
    )
    assert again.id == succeeded.id

    # A watcher resuming from before the move hears of the deletion and the later create.
    stream = tasks.WatchTasks(task_service_pb2.WatchTasksRequest(since_revision=old_revision))
    heard: dict[str, int] = {}

    async def hear() -> None:
        while not {doomed.id, later.id} <= heard.keys():
            event = await read_message(stream, task_service_pb2.TaskEvent)
            heard[event.task.id] = event.type

    await asyncio.wait_for(hear(), 20)
    stream.cancel()
    assert heard[doomed.id] == task_service_pb2.TASK_EVENT_TYPE_DELETED
    assert heard[later.id] == task_service_pb2.TASK_EVENT_TYPE_UPSERTED

    # The scheduled task still runs when due, on PostgreSQL.
    await cluster.start_worker(scheduler=pg_scheduler)
    ran = await wait_terminal(tasks, later.id, timeout=60)
    assert ran.state == task_pb2.TASK_STATE_SUCCEEDED
    assert ran.started_at.ToMicroseconds() >= due.ToMicroseconds()

    # A second copy into the now used database is refused.
    code, _, err = await _run_async("copy", "--from", str(cluster.database), "--to", postgres_url)
    assert code == 1
    assert "not empty" in err


@pytest.mark.sqlite_only
@pytest.mark.timeout(120)
async def test_copy_refuses_running_tasks_unless_told_to_expire_their_leases(
    cluster: Cluster, postgres_url: str
) -> None:
    sqlite_scheduler = await cluster.start_scheduler()
    slow = await cluster.start_worker("--foo-seconds", "60")
    tasks = cluster.tasks(sqlite_scheduler)
    task = await tasks.CreateTask(request("foo"))

    async def running() -> bool:
        current = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
        return current.state == task_pb2.TASK_STATE_RUNNING

    await eventually(running, message="the task running")
    sqlite_scheduler.kill()  # a crash: the lease stays in the file
    sqlite_scheduler.wait(10)
    slow.kill()
    slow.wait(10)

    code, out, err = await _run_async("copy", "--from", str(cluster.database), "--to", postgres_url)
    assert code == 1
    assert "RUNNING" in err and "--expire-leases" in err
    code, out, err = await _run_async(
        "copy", "--from", str(cluster.database), "--to", postgres_url, "--expire-leases"
    )
    assert code == 0, err
    assert "leases expired: 1" in out

    pg_scheduler = await cluster.start_scheduler("--database", postgres_url)
    await cluster.start_worker(scheduler=pg_scheduler)
    done = await wait_terminal(cluster.tasks(pg_scheduler), task.id, timeout=30)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED
    outcomes = [a.outcome for a in done.attempt_history]
    assert outcomes == [task_pb2.ATTEMPT_OUTCOME_WORKER_LOST, task_pb2.ATTEMPT_OUTCOME_SUCCEEDED]


@pytest.mark.sqlite_only
async def test_copy_in_batches_keeps_the_rowid_order_and_continues_the_sequence(
    cluster: Cluster, postgres_url: str
) -> None:
    import asyncpg

    scheduler = await cluster.start_scheduler("--task-types", "sum2")
    tasks = cluster.tasks(scheduler)
    for start in range(0, 2500, 1000):  # no worker: they stay pending
        batch = [request("sum2", {"first": i, "second": 0}) for i in range(start, start + 1000)]
        batch = batch[: 2500 - start]
        await tasks.BatchCreateTasks(task_service_pb2.BatchCreateTasksRequest(tasks=batch))
    _stop(scheduler)
    with sqlite3.connect(cluster.database) as source:
        order = [row[0] for row in source.execute("SELECT id FROM tasks ORDER BY rowid")]
    assert len(order) == 2500

    code, out, err = await _run_async("copy", "--from", str(cluster.database), "--to", postgres_url)
    assert code == 0, err
    assert "tasks: 2500 rows" in out

    conn = await asyncpg.connect(postgres_url)
    try:
        copied = [row["id"] for row in await conn.fetch("SELECT id FROM tasks ORDER BY seq")]
        highest = await conn.fetchval("SELECT max(seq) FROM tasks")
        following = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('tasks', 'seq'))")
    finally:
        await conn.close()
    assert copied == order
    assert following > highest


def test_copy_to_a_bad_url_exits_non_zero_naming_it(tmp_path: Path) -> None:
    database = tmp_path / "orchestrator.db"
    assert _run("migrate", "--database", str(database)).returncode == 0
    done = _run("copy", "--from", str(database), "--to", "postgresql://me:s3cret@127.0.0.1:1/t")
    assert done.returncode == 1
    assert "127.0.0.1:1/t" in done.stderr and "s3cret" not in done.stderr
    wrong_kind = _run("copy", "--from", str(database), "--to", "sqlite:///elsewhere.db")
    assert wrong_kind.returncode == 1
    assert "sqlite:///elsewhere.db" in wrong_kind.stderr


def test_copy_from_a_missing_file_refuses_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    done = _run("copy", "--from", str(missing), "--to", "postgresql://me@127.0.0.1:1/t")
    assert done.returncode == 1
    assert str(missing) in done.stderr
    assert not missing.exists()
