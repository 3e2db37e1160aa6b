"""Soak: one scheduler for a long while under steady load, its workers churning; watch for leaks.

A real scheduler process (production timings: heartbeat 5 s, lease TTL 30 s) serves
``--workers`` real worker processes, each restarted every ``--restart-every`` seconds
(staggered; every other restart is a SIGKILL, the rest a graceful SIGTERM), while a producer
creates ``--rate`` tasks a second (the recording handler of the fault suite, a few ms each).
Every ``--sample-every`` seconds it samples the scheduler's resident memory (VmRSS), open file
descriptors (/proc/<pid>/fd), live asyncio tasks (the ``orchestrator_asyncio_tasks``
gauge of /metrics) and the database's size (SQLite's page cache, up to 32 MiB for each of
the scheduler's two connections, fills as the file grows: RSS that follows it is not a
leak), and at the end prints the samples, the last/first ratio of each, and runs
the fault suite's checker (at-least-once, exactly one accepted completion per task).

    python bench/soak.py --minutes 30        # the long profile's soak
    python bench/soak.py --minutes 3         # a quick look

Exit status 0 when the checker passes and every task finished; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support and tests.faults, as the fault suite uses them

import grpc  # noqa: E402

from orchestrator.v1 import (  # noqa: E402
    admin_service_pb2,
    admin_service_pb2_grpc,
    task_service_pb2_grpc,
)
from tests.faults.checker import check  # noqa: E402
from tests.support.processes import (  # noqa: E402
    ManagedProcess,
    SchedulerProcess,
    scheduler_args,
    worker_args,
)
from tests.support.tasks import request  # noqa: E402

SCHEDULER = (
    "--task-types", "recorded",
    "--heartbeat-interval", "5",
    "--lease-ttl", "30",
    "--log-level", "info",
)  # fmt: skip


@dataclass
class Sample:
    at: float
    rss_mib: float
    fds: int
    asyncio_tasks: int
    workers: int
    created: int
    finished: int
    database_mib: float


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def gauge(http_address: str, name: str) -> int:
    with urllib.request.urlopen(f"http://{http_address}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
    return -1


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.records = work / "records"
        self.records.mkdir()
        self.database = work / "soak.db"
        self.scheduler = SchedulerProcess(
            "scheduler", scheduler_args(self.database, *SCHEDULER), work, env=None
        )
        self.workers: list[ManagedProcess | None] = [None] * args.workers
        self.generations = itertools.count(1)
        self.acked: list[str] = []
        self.samples: list[Sample] = []
        self.restarts = {"SIGTERM": 0, "SIGKILL": 0}
        self.stopping = asyncio.Event()

    def start_worker(self, slot: int) -> ManagedProcess:
        worker_id = f"soak-w{slot}-{next(self.generations)}"
        worker = ManagedProcess(
            worker_id,
            worker_args(
                self.scheduler.grpc_address, worker_id,
                "--module", "tests.support.recording_handlers",
                "--slots", "8",
                "--shutdown-grace", "5",
                "--reconnect-max-delay", "1",
                "--log-level", "warning",
            ),
            self.work,
            env={"PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        self.workers[slot] = worker
        return worker

    async def churn(self) -> None:
        """Restart one worker at a time so that each is restarted every ~restart_every s."""
        pause = self.args.restart_every / len(self.workers)
        for n in itertools.count():
            await asyncio.sleep(pause)  # the churn schedule
            if self.stopping.is_set():
                return
            slot = n % len(self.workers)
            old = self.workers[slot]
            if old is not None:
                how = signal.SIGKILL if n % 2 else signal.SIGTERM
                old.signal(how)
                self.restarts[how.name] += 1
                await old.wait_async(30)
            self.start_worker(slot)

    async def produce(self, tasks: task_service_pb2_grpc.TaskServiceAsyncStub) -> None:
        started = time.monotonic()
        for i in itertools.count():
            if self.stopping.is_set():
                return
            due = started + i / self.args.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))  # the load's pacing
            payload = {"record_dir": str(self.records), "sleep": 0.005, "fail_once": i % 20 == 0}
            create = request("recorded", payload, idempotency_key=f"soak-{i}")
            while True:  # a create is retried until answered (the key makes it once)
                try:
                    self.acked.append((await tasks.CreateTask(create, timeout=10)).id)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.2)

    async def sample(self, admin: admin_service_pb2_grpc.AdminServiceAsyncStub) -> None:
        started = time.monotonic()
        while True:
            pid = self.scheduler.pid
            stats = await admin.GetStats(admin_service_pb2.GetStatsRequest(), timeout=10)
            totals = stats.totals
            self.samples.append(
                Sample(
                    at=time.monotonic() - started,
                    rss_mib=rss_mib(pid),
                    fds=open_fds(pid),
                    asyncio_tasks=await asyncio.to_thread(
                        gauge, self.scheduler.http_address, "orchestrator_asyncio_tasks"
                    ),
                    workers=await asyncio.to_thread(
                        gauge, self.scheduler.http_address, "orchestrator_connected_workers"
                    ),
                    created=len(self.acked),
                    finished=totals.succeeded + totals.failed + totals.cancelled,
                    database_mib=self.database_mib(),
                )
            )
            print(_row(self.samples[-1]), flush=True)
            if self.stopping.is_set():
                return
            await asyncio.sleep(self.args.sample_every)  # the sampling period

    def database_mib(self) -> float:
        """The database with its WAL: SQLite's page cache (32 MiB a connection, two
        connections) fills as this grows, which RSS shows too."""
        files = (self.database, self.database.with_name(self.database.name + "-wal"))
        return sum(f.stat().st_size for f in files if f.exists()) / 2**20

    async def run(self) -> bool:
        await self.scheduler.wait_ready()
        for slot in range(len(self.workers)):
            self.start_worker(slot)
        channel = grpc.aio.insecure_channel(self.scheduler.grpc_address)
        tasks = task_service_pb2_grpc.TaskServiceStub(channel)
        admin = admin_service_pb2_grpc.AdminServiceStub(channel)
        print(
            f"soak: {self.args.minutes:g} min, {len(self.workers)} workers restarted every "
            f"~{self.args.restart_every:g} s, {self.args.rate:g} tasks/s; scheduler pid "
            f"{self.scheduler.pid}, files in {self.work}"
        )
        print(_header())
        sampler = asyncio.create_task(self.sample(admin))
        jobs = [asyncio.create_task(self.churn()), asyncio.create_task(self.produce(tasks))]
        await asyncio.sleep(self.args.minutes * 60)  # the soak's duration
        self.stopping.set()
        await asyncio.gather(*jobs)
        ok = await self.finish(admin)
        await sampler
        await channel.close()
        return ok

    async def finish(self, admin: admin_service_pb2_grpc.AdminServiceAsyncStub) -> bool:
        """Let every task finish (workers stay up), then check the promise."""
        deadline = time.monotonic() + 120
        finished = 0
        while time.monotonic() < deadline:
            totals = (await admin.GetStats(admin_service_pb2.GetStatsRequest(), timeout=10)).totals
            finished = totals.succeeded + totals.failed + totals.cancelled
            if finished == len(self.acked):
                break
            await asyncio.sleep(0.2)  # polling the backlog
        for worker in self.workers:
            if worker is not None:
                worker.signal(signal.SIGTERM)
        for worker in self.workers:
            if worker is not None:
                await worker.wait_async(30)
        try:
            report = check(
                self.database, acknowledged=self.acked, records=self.records, lease_ttl=30.0,
                require_terminal=True,
            )  # fmt: skip
        except AssertionError as exc:
            print(exc)
            return False
        print(
            f"checker ok: {report.tasks} tasks, {report.attempts} attempts; worker restarts "
            f"{self.restarts['SIGTERM']} graceful, {self.restarts['SIGKILL']} killed"
        )
        return finished == len(self.acked)

    def summary(self) -> None:
        if len(self.samples) < 2:
            return
        first, last = self.samples[0], self.samples[-1]
        # The first sample after warm-up (a quarter of the run) is the fairer baseline.
        warm = next((s for s in self.samples if s.at >= self.samples[-1].at / 4), self.samples[1])
        for name, base in (("first", first), ("after warm-up", warm)):
            print(
                f"last/{name} ({base.at:.0f} s): RSS {last.rss_mib / base.rss_mib:.2f}, "
                f"fds {last.fds / base.fds:.2f}, asyncio tasks "
                f"{last.asyncio_tasks / max(1, base.asyncio_tasks):.2f}"
            )

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process is not None and process.running:
                process.signal(signal.SIGTERM)
        for process in [*self.workers, self.scheduler]:
            if process is not None:
                process.wait(30)


def _header() -> str:
    return (
        f"{'t (s)':>7} {'RSS MiB':>8} {'fds':>5} {'asyncio':>8} {'workers':>8} "
        f"{'created':>8} {'finished':>9} {'db MiB':>7}"
    )


def _row(s: Sample) -> str:
    return (
        f"{s.at:7.0f} {s.rss_mib:8.1f} {s.fds:5d} {s.asyncio_tasks:8d} {s.workers:8d} "
        f"{s.created:8d} {s.finished:9d} {s.database_mib:7.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--restart-every", type=float, default=30.0, help="seconds per worker")
    parser.add_argument("--rate", type=float, default=50.0, help="tasks created per second")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))

    async def soak_run() -> tuple[Soak, bool]:
        soak = Soak(args, work)
        try:
            return soak, await soak.run()
        finally:
            soak.stop()

    soak, ok = asyncio.run(soak_run())
    soak.summary()
    if ok and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
