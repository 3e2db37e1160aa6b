"""Crash-consistent images of the database under load, with the default
``--sqlite-synchronous FULL``.

What this simulates, honestly: at random instants the scheduler is frozen (SIGSTOP) in the
middle of whatever it was doing — possibly inside a write transaction, between two pages of
a commit — and ``orchestrator.db``, ``-wal`` and ``-shm`` are copied as they are at that
instant, then the scheduler goes on (SIGCONT). Each copy is what a crash at that instant
would leave *if the kernel's page cache survived*: the copy reads through the page cache, so
it includes writes the scheduler made but never fsynced. It therefore proves that SQLite's
WAL recovery turns any mid-write image into a consistent database, and that a create is
acknowledged only after its transaction reached the database files (every create the
client saw answered before the freeze is in the copy). It does *not* prove fsync ordering
against a real power loss, where unsynced pages vanish: that is SQLite's ``synchronous=FULL``
contract (an fsync of the WAL at every commit, before the answer), which needs a power cut
or a fault-injecting block device to test.

The live database is checked at the end as well, once everything has finished.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import grpc
import pytest

from orchestrator.v1 import admin_service_pb2
from tests.faults.checker import check
from tests.faults.profile import Profile
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.processes import SchedulerProcess
from tests.support.tasks import request

# Tests of SQLite itself (an SQLite file copied mid-write, as a power cut leaves it).
pytestmark = pytest.mark.sqlite_only

MODULE = ("--module", "tests.support.recording_handlers")
SEED = 1


def _stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped (state T): nothing writes any more."""
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            state = stat.read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue  # a thread that just ended
        if state not in ("T", "t"):
            return False
    return True


def _snapshot(database: Path, into: Path) -> None:
    into.mkdir()
    for suffix in ("", "-wal", "-shm"):
        source = database.with_name(database.name + suffix)
        if source.exists():
            shutil.copyfile(source, into / source.name)


#: Creators per client channel: well under the scheduler's 1000 concurrent streams per
#: connection (at exactly 1000, a few calls come back UNAVAILABLE, RST_STREAM REFUSED_STREAM).
STREAMS_PER_CHANNEL = 250


async def _load(
    cluster: Cluster,
    scheduler: SchedulerProcess,
    records: Path,
    profile: Profile,
    acked: list[str],
) -> int:
    """``load_streams`` concurrent creators, ``load_tasks_per_second`` in all, each create
    acknowledged before the next of its stream (the pacing is a schedule, not a wait).
    Answers how many creates had to be repeated (keyed, so a repeat is safe)."""
    streams, rate = profile.load_streams, profile.load_tasks_per_second
    stubs = [cluster.tasks(scheduler) for _ in range(0, streams, STREAMS_PER_CHANNEL)]
    start = time.monotonic()
    end = start + profile.load_seconds
    repeated = 0

    async def stream(k: int) -> None:
        nonlocal repeated
        stub = stubs[k // STREAMS_PER_CHANNEL]
        j = 0
        while (at := start + (k + j * streams) / rate) < end:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            n = k + j * streams
            create = request(
                "recorded",
                {"record_dir": str(records), "sleep": 0.005, "fail_once": n % 10 == 0},
                idempotency_key=f"k{n}",
            )
            while True:
                try:
                    answer = await stub.CreateTask(create, timeout=10)
                    break
                except grpc.aio.AioRpcError as exc:  # not expected: the key makes it safe
                    repeated += 1
                    if repeated <= 5:
                        print(f"create k{n}: {exc.code().name} {exc.details()}, repeating")
            acked.append(answer.id)
            j += 1

    await asyncio.gather(*(stream(k) for k in range(streams)))
    return repeated


async def test_snapshots_taken_at_random_instants_recover_and_hold_every_acknowledged_create(
    cluster: Cluster, tmp_path: Path, profile: Profile
) -> None:
    rng = random.Random(SEED)
    records = tmp_path / "records"
    records.mkdir()
    scheduler = await cluster.start_scheduler("--task-types", "recorded")
    workers = [
        await cluster.start_worker(*MODULE, "--slots", "8", scheduler=scheduler) for _ in range(2)
    ]
    acked: list[str] = []
    loading = asyncio.create_task(_load(cluster, scheduler, records, profile, acked))
    started = time.monotonic()
    # The cut schedule: random instants within the load (not synchronisation).
    instants = sorted(rng.uniform(0.5, profile.load_seconds) for _ in range(profile.power_cuts))
    snapshots: list[tuple[Path, list[str]]] = []
    pauses: list[float] = []
    for n, instant in enumerate(instants):
        await asyncio.sleep(max(0.0, started + instant - time.monotonic()))
        frozen = time.monotonic()
        scheduler.signal(signal.SIGSTOP)
        try:
            await eventually(
                lambda: _stopped(scheduler.pid), interval=0.001, message="scheduler stopped"
            )
            # Every create seen answered so far was answered before the freeze.
            acknowledged = list(acked)
            snapshot = tmp_path / f"cut{n}"
            _snapshot(cluster.database, snapshot)
        finally:
            scheduler.signal(signal.SIGCONT)
        pauses.append(time.monotonic() - frozen)
        snapshots.append((snapshot / cluster.database.name, acknowledged))
    repeated = await loading

    async def all_terminal() -> bool:
        stats = await cluster.admin(scheduler).GetStats(admin_service_pb2.GetStatsRequest())
        t = stats.totals
        return t.succeeded + t.failed + t.cancelled == len(acked)

    await eventually(all_terminal, timeout=120, interval=0.2, message="every task finished")
    for worker in workers:
        assert worker.running, worker.dump()
    final = check(
        cluster.database, acknowledged=acked, records=records, lease_ttl=2.0,
        require_terminal=True,
    )  # fmt: skip

    lines = []
    for database, acknowledged in snapshots:
        # Open it as a restarted scheduler would (read-write: SQLite recovers the WAL).
        conn = sqlite3.connect(database)
        try:
            (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
            (stored,) = conn.execute("SELECT count(*) FROM tasks").fetchone()
        finally:
            conn.close()
        assert integrity == "ok", f"{database}: {integrity}"
        # Workers were still running: no records, tasks need not be finished, and leases
        # are judged by a clock that has moved on since the image, hence the long TTL.
        report = check(database, acknowledged=acknowledged, lease_ttl=3600.0)
        lines.append(f"{len(acknowledged)} acked / {stored} stored ({report.attempts} attempts)")
    print(
        f"\npower cuts (seed {SEED}): {len(snapshots)} images, each recovered and holding "
        f"every create acknowledged before it: {'; '.join(lines)}; freeze+copy "
        f"max {max(pauses) * 1000:.0f} ms; {repeated} creates repeated; live database at the "
        f"end: checker ok "
        f"({final.tasks} tasks, {final.attempts} attempts)"
    )
    assert all(acknowledged for _, acknowledged in snapshots), "an image before any create"
