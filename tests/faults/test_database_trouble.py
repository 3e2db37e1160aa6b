"""The database in trouble: locked by another process, full, read-only.

- Another process holds SQLite's write lock for 3 s: creates made meanwhile wait and then
  succeed — no client sees an error.
- The disk fills up (a file-size limit on the running scheduler, ``RLIMIT_FSIZE``: Python
  ignores SIGXFSZ, so SQLite's writes fail with EFBIG): creates are refused with
  RESOURCE_EXHAUSTED (or UNAVAILABLE) and a clear message, reads still answer, and once the
  limit is raised again a create succeeds within 1 s, without a restart.
- The database file is immutable (``chattr +i``, which binds root too): the scheduler exits
  1 at start, naming the file and saying "read-only".
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.faults.checker import check
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.processes import SchedulerProcess, scheduler_args
from tests.support.tasks import request, wait_terminal

# Tests of SQLite itself (SQLite's own troubles: its file locked, its disk full, its WAL).
pytestmark = pytest.mark.sqlite_only

if TYPE_CHECKING:  # the async stub class exists only in the generated .pyi file
    from orchestrator.v1.task_service_pb2_grpc import TaskServiceAsyncStub

MODULE = ("--module", "tests.support.recording_handlers")
#: Held by the other process, as the fault describes it.
LOCK_SECONDS = 3.0

_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))  # the fault itself: the write lock held this long
conn.execute("ROLLBACK")
print("released", flush=True)
"""


async def _wait_all_terminal(
    stub: TaskServiceAsyncStub,
    ids: list[str],
    timeout: float,  # noqa: ASYNC109 - passed on to wait_terminal()
) -> None:
    for task_id in ids:
        await wait_terminal(stub, task_id, timeout=timeout)


@pytest.mark.timeout(120)
async def test_write_lock_held_by_another_process(cluster: Cluster, tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler("--task-types", "recorded")
    await cluster.start_worker(*MODULE, "--slots", "4", scheduler=scheduler)
    stub = cluster.tasks(scheduler)

    def task(i: int) -> task_service_pb2.CreateTaskRequest:
        return request("recorded", {"record_dir": str(records), "sleep": 0.05, "n": i})

    acked = [(await stub.CreateTask(task(i), timeout=10)).id for i in range(5)]

    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLD_LOCK, str(cluster.database), str(LOCK_SECONDS),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None
    line = await asyncio.wait_for(holder.stdout.readline(), 30)
    assert line.strip() == b"locked", line
    locked_at = time.monotonic()

    async def create(i: int) -> tuple[str, float]:
        answer = await stub.CreateTask(task(i), timeout=20)  # any error fails the test
        return answer.id, time.monotonic() - locked_at

    creates = [asyncio.create_task(create(i)) for i in range(5, 25)]
    line = await asyncio.wait_for(holder.stdout.readline(), 30)
    assert line.strip() == b"released", line
    released_after = time.monotonic() - locked_at
    assert await holder.wait() == 0
    answered = await asyncio.gather(*creates)
    acked += [task_id for task_id, _ in answered]
    latencies = sorted(after for _, after in answered)
    print(
        f"\nwrite lock held {released_after:.2f} s by another process: {len(answered)} creates "
        f"all succeeded, answered {latencies[0]:.2f}-{latencies[-1]:.2f} s after the lock was "
        "taken"
    )
    # They really waited for the lock (otherwise the fault was not a fault), then went on.
    assert latencies[0] >= LOCK_SECONDS - 0.5, latencies
    assert latencies[-1] <= released_after + 5.0, latencies
    await _wait_all_terminal(stub, acked, timeout=30)
    report = check(
        cluster.database, acknowledged=acked, records=records, lease_ttl=2.0,
        require_terminal=True,
    )  # fmt: skip
    assert report.tasks == len(acked)


async def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """A short command (mount, chattr) without blocking the event loop."""
    return await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True)


def _sizes(*paths: Path) -> int:
    return max(p.stat().st_size for p in paths if p.exists())


async def _create_until_refused(
    stub: TaskServiceAsyncStub,
    make: Callable[[int], task_service_pb2.CreateTaskRequest],
    acked: list[str],
) -> grpc.aio.AioRpcError | None:
    """Create big tasks (appending each acknowledged id) until a create is refused; at most
    ~40 MB of payload, far past any limit these tests set."""
    for i in range(len(acked), 400):
        try:
            acked.append((await stub.CreateTask(make(i), timeout=10)).id)
        except grpc.aio.AioRpcError as exc:
            return exc
    return None


async def _create_once_space_returns(
    stub: TaskServiceAsyncStub, task: task_service_pb2.CreateTaskRequest
) -> tuple[str, float]:
    """Call as the space comes back: the first create that succeeds, and how long it took."""
    space_back = time.monotonic()

    async def create_works() -> str:
        return (await stub.CreateTask(task, timeout=5)).id

    created = await eventually(create_works, timeout=10, interval=0.05, message="a create")
    return created, time.monotonic() - space_back


@pytest.mark.timeout(120)
async def test_disk_full_then_space_returns(cluster: Cluster, tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler("--task-types", "recorded", "--log-level", "info")
    await cluster.start_worker(*MODULE, "--slots", "4", scheduler=scheduler)
    stub = cluster.tasks(scheduler)
    pad = "x" * 100_000
    acked: list[str] = []
    database = cluster.database
    wal = database.with_name(database.name + "-wal")

    def big(i: int) -> task_service_pb2.CreateTaskRequest:
        return request("recorded", {"record_dir": str(records), "sleep": 0.01, "n": i, "pad": pad})

    for i in range(5):
        acked.append((await stub.CreateTask(big(i), timeout=10)).id)
    # "The disk is full" a little above what the scheduler's files hold now (its logs too:
    # the limit is per process, for every file it writes).
    limit = _sizes(database, wal, scheduler.stderr_path, scheduler.stdout_path) + 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.prlimit(scheduler.pid, resource.RLIMIT_FSIZE, (limit, hard))
    try:
        refusal = await _create_until_refused(stub, big, acked)
        assert refusal is not None, f"no create was refused under a {limit} byte file limit"
        code, details = refusal.code(), refusal.details() or ""
        print(
            f"\nfull at {len(acked)} tasks (file size limit {limit} bytes): {code.name}: {details}"
        )
        assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE), (
            f"{code.name}: {details}"
        )
        assert "database" in details and ("full" in details or "written" in details), details
        assert "Traceback" not in details and 'File "' not in details, details

        # Still full: reads answer, and a second create is refused the same way.
        got = await stub.GetTask(task_service_pb2.GetTaskRequest(id=acked[0]), timeout=5)
        assert got.id == acked[0]
        listed = await stub.ListTasks(
            task_service_pb2.ListTasksRequest(page_size=10, view=task_pb2.TASK_VIEW_BASIC),
            timeout=5,
        )
        assert len(listed.tasks) == min(10, len(acked)), listed
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await stub.CreateTask(big(-1), timeout=10)
        assert again.value.code() in (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.UNAVAILABLE,
        ), again.value
    finally:
        if scheduler.running:
            resource.prlimit(scheduler.pid, resource.RLIMIT_FSIZE, (hard, hard))
    created, recovered = await _create_once_space_returns(stub, big(-2))
    acked.append(created)
    print(f"space back: a create succeeded {recovered * 1000:.0f} ms later, without a restart")
    assert recovered <= 1.0, f"a create succeeded only {recovered:.2f} s after space came back"
    assert scheduler.running, scheduler.dump()
    await _wait_all_terminal(stub, acked, timeout=60)
    report = check(
        database, acknowledged=acked, records=records, lease_ttl=2.0, require_terminal=True
    )
    print(f"checker ok: {report.tasks} tasks, {report.attempts} attempts")


@pytest.mark.timeout(120)
async def test_disk_full_on_a_small_tmpfs(cluster: Cluster, tmp_path: Path) -> None:
    """The same with a real ENOSPC: the database on an 8 MiB tmpfs that a filler file fills;
    deleting the filler gives the space back. SQLite reports SQLITE_FULL, which the
    scheduler answers RESOURCE_EXHAUSTED."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = await _run(
        "mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount_point)
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
            "test_disk_full_then_space_returns covers a full disk with a file size limit"
        )
    records = tmp_path / "records"
    records.mkdir()
    try:
        cluster.database = mount_point / "orchestrator.db"
        scheduler = await cluster.start_scheduler("--task-types", "recorded", "--log-level", "info")
        await cluster.start_worker(*MODULE, "--slots", "4", scheduler=scheduler)
        stub = cluster.tasks(scheduler)
        pad = "y" * 100_000

        def big(i: int) -> task_service_pb2.CreateTaskRequest:
            payload = {"record_dir": str(records), "sleep": 0.01, "n": i, "pad": pad}
            return request("recorded", payload)

        acked = [(await stub.CreateTask(big(i), timeout=10)).id for i in range(5)]
        filler = mount_point / "filler"
        # Take every free byte (unbuffered: ENOSPC comes from the write, not from a close).
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while out.write(b"\0" * 65536):
                pass
        refusal = await _create_until_refused(stub, big, acked)
        assert refusal is not None, "no create was refused on a full file system"
        code, details = refusal.code(), refusal.details() or ""
        print(f"\ntmpfs full at {len(acked)} tasks: {code.name}: {details}")
        got = await stub.GetTask(task_service_pb2.GetTaskRequest(id=acked[0]), timeout=5)
        assert got.id == acked[0]
        filler.unlink()
        created, recovered = await _create_once_space_returns(stub, big(-2))
        acked.append(created)
        print(f"space back: a create succeeded {recovered * 1000:.0f} ms later")
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{code.name}: {details}"
        assert "full" in details, details
        assert recovered <= 1.0, f"a create succeeded only {recovered:.2f} s after space came back"
        await _wait_all_terminal(stub, acked, timeout=60)
        check(cluster.database, acknowledged=acked, records=records, lease_ttl=2.0,
              require_terminal=True)  # fmt: skip
    finally:
        for process in [*cluster.workers, *cluster.schedulers]:
            process.terminate(15)  # the mount is busy while they hold its files
        await _run("umount", "-l", str(mount_point))


@pytest.mark.timeout(120)
async def test_results_that_arrive_while_writes_fail_are_run_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Results whose write fails are lost with it: their leases expire and the tasks run
    again (at-least-once), and the worker's slots come back all the same, or it would never
    be sent work again. Writes fail for sure while the WAL file is immutable (chattr +i
    refuses writes through descriptors already open)."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.fail("chattr is missing: this test needs it (e2fsprogs)")
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler("--task-types", "recorded", "--log-level", "info")
    await cluster.start_worker(*MODULE, "--slots", "2", scheduler=scheduler)
    stub = cluster.tasks(scheduler)

    def task(i: int, sleep: float) -> task_service_pb2.CreateTaskRequest:
        return request("recorded", {"record_dir": str(records), "sleep": sleep, "n": i})

    acked = [(await stub.CreateTask(task(i, 1.0), timeout=10)).id for i in range(2)]

    async def both_running() -> bool:
        listed = await stub.ListTasks(
            task_service_pb2.ListTasksRequest(states=[task_pb2.TASK_STATE_RUNNING]), timeout=5
        )
        return len(listed.tasks) == 2

    await eventually(both_running, timeout=10, message="both tasks running")
    wal = cluster.database.with_name(cluster.database.name + "-wal")
    frozen = await _run(chattr, "+i", str(wal))
    assert frozen.returncode == 0, frozen.stderr
    try:

        def results_lost() -> bool:
            return "applying a worker's results failed" in scheduler.stderr()

        await eventually(results_lost, timeout=10, message="the results' write failed")
    finally:
        thawed = await _run(chattr, "-i", str(wal))
        assert thawed.returncode == 0, thawed.stderr
    acked.append((await stub.CreateTask(task(2, 0.01), timeout=10)).id)
    await _wait_all_terminal(stub, acked, timeout=30)
    for task_id in acked:
        done = await stub.GetTask(task_service_pb2.GetTaskRequest(id=task_id), timeout=5)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
    report = check(
        cluster.database, acknowledged=acked, records=records, lease_ttl=2.0,
        require_terminal=True,
    )  # fmt: skip
    print(f"\nresults lost while writes failed, run again; checker ok ({report.attempts} attempts)")


@pytest.mark.timeout(60)
async def test_read_only_database_is_a_clear_start_up_error(
    cluster: Cluster, tmp_path: Path
) -> None:
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.fail("chattr is missing: this test needs it (e2fsprogs) to make the file immutable")
    first = await cluster.start_scheduler("--task-types", "foo")  # known later, from the file
    assert first.terminate() == 0
    database = cluster.database
    made = await _run(chattr, "+i", str(database))
    if made.returncode != 0:
        pytest.fail(f"chattr +i {database} failed (this file system?): {made.stderr.strip()}")
    try:
        process = SchedulerProcess(
            "read-only", scheduler_args(database, "--log-level", "info"), tmp_path, env=None
        )
        cluster.schedulers.append(process)  # stopped at teardown if it is still running

        async def exited_or_ready() -> bool:
            return not process.running or "scheduler ready" in process.stderr()

        await eventually(exited_or_ready, timeout=20, message="the scheduler exited")
        if process.running:  # it started on a database it cannot write: what do writes get?
            await process.wait_ready()
            try:
                await cluster.tasks(process).CreateTask(request("foo"), timeout=5)
                answer = "OK"
            except grpc.aio.AioRpcError as exc:
                answer = f"{exc.code().name}: {exc.details()}"
            pytest.fail(
                f"the scheduler started (ready) on the immutable database {database} instead "
                f"of exiting 1 at start; a CreateTask then answers {answer}"
            )
        code = await process.wait_async(5)
        stderr = process.stderr()
        print(f"\nread-only database: exit {code}: {stderr.strip().splitlines()[-1]}")
        assert code == 1, stderr
        assert str(database) in stderr, stderr
        assert "read-only" in stderr, stderr
        assert "Traceback" not in stderr, stderr
    finally:
        removed = await _run(chattr, "-i", str(database))
        assert removed.returncode == 0, f"chattr -i {database}: {removed.stderr}"
