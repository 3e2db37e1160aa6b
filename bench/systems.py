"""The systems the benchmark compares, each behind the same few operations.

Every system runs its no-op task (:mod:`bench.starts`) on 2 worker processes. A
:class:`System` starts its servers and workers fresh for each run, and creates tasks in the
four ways the workloads need: one call per task (with up to ``inflight`` calls at once where
the client can), in bulk where the system has a bulk API, paced at a rate, and due at given
times. The workloads (:mod:`bench.workloads`) time these calls and read the starts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.processes import Process, RedisServer, executable, free_port, wait_until

WORKERS = 2
ORCHESTRATOR_SLOTS = 64


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)


class System(ABC):
    name = ""
    #: How its queue is kept, for the table (durable or not is the point of comparison).
    storage = ""
    #: What "bulk" means for it (its bulk API, or that it has none).
    bulk = ""

    def __init__(self, workdir: Path, starts: Path) -> None:
        self.workdir = workdir
        self.starts = starts
        self.processes: list[Process] = []

    def env(self) -> dict[str, str]:
        return {"BENCH_STARTS_DIR": str(self.starts)}

    def spawn(self, name: str, args: Sequence[str]) -> Process:
        process = Process(name, args, self.workdir, self.env())
        self.processes.append(process)
        return process

    def setup(self) -> None:  # noqa: B027 - an optional hook
        """Once, before the first run (a broker shared by the runs)."""

    def close(self) -> None:  # noqa: B027 - an optional hook
        """Once, after the last run."""

    @abstractmethod
    def start(self) -> None:
        """Start the workers (and the server) afresh for one run, with an empty queue;
        return once they are ready for tasks."""

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def check_alive(self) -> None:
        for process in self.processes:
            if not process.running:
                tail = process.output()[-3000:]
                raise RuntimeError(f"{self.name}: {process.name} exited\n{tail}")

    @abstractmethod
    def create_single(self, count: int, inflight: int) -> tuple[float, float]:
        """``count`` tasks, one call each; answers the wall-clock times of the first call
        and of the last acknowledgement."""

    def create_bulk(self, count: int, batch: int) -> tuple[float, float]:
        """The same through the bulk API; one call per task where there is none."""
        return self.create_single(count, 1)

    @abstractmethod
    def create_paced(self, count: int, rate: float) -> None:
        """``count`` tasks one at a time, ``rate`` a second."""

    @abstractmethod
    def create_due(self, dues: Sequence[float]) -> None:
        """One task due at each wall-clock time of ``dues``."""


def paced(count: int, rate: float) -> list[float]:
    """The wall-clock instants of ``count`` calls at ``rate`` a second, from now."""
    start = time.time()
    return [start + i / rate for i in range(count)]


def sleep_until(instant: float) -> None:
    delay = instant - time.time()
    if delay > 0:
        time.sleep(delay)  # the pacing of a paced producer


# -- task-orchestrator -------------------------------------------------------------------


class Orchestrator(System):
    name = "task-orchestrator"
    storage = "SQLite, fsync per commit (durable)"
    bulk = "BatchCreateTasks"

    #: Start on the database as it is (workload D fills it first) rather than afresh.
    keep_database = False

    @property
    def database(self) -> Path:
        return self.workdir / "orchestrator.db"

    def start(self) -> None:
        import sys

        port = free_port()
        self.target = f"127.0.0.1:{port}"
        self.scheduler = self.spawn(
            "scheduler",
            [
                sys.executable, "-m", "scheduler_service",
                "--database", str(self._fresh_database()),
                "--listen", self.target,
                "--http-listen", "127.0.0.1:0",
                "--task-types", "bench_noop",
                "--log-level", "warning",
            ],
        )  # fmt: skip
        for n in range(WORKERS):
            self.spawn(
                f"worker{n}",
                [
                    sys.executable, "-m", "worker_service",
                    "--scheduler", self.target,
                    "--worker-id", f"bench-{n}",
                    "--module", "bench.orchestrator_tasks",
                    # Only the benchmark's task: not the built-in examples, which would run
                    # the backlog of other types that workload D stores.
                    "--task-types", "bench_noop",
                    "--slots", str(ORCHESTRATOR_SLOTS),
                    "--log-level", "warning",
                ],
            )  # fmt: skip

        async def connected() -> int:
            from orchestrator_client import AsyncClient

            async with AsyncClient(self.target) as client:
                return len((await client.list_workers()).workers)

        def ready() -> bool:
            self.check_alive()
            try:
                return asyncio.run(connected()) == WORKERS
            except Exception:
                return False

        wait_until(ready, 30, "task-orchestrator workers connected")

    def _fresh_database(self) -> Path:
        if not self.keep_database:
            for path in self.workdir.glob("orchestrator.db*"):
                path.unlink()
        return self.database

    def _run(self, work: Any) -> Any:
        return asyncio.run(work)

    def create_single(self, count: int, inflight: int) -> tuple[float, float]:
        async def work() -> tuple[float, float]:
            from orchestrator_client import AsyncClient

            async with AsyncClient(self.target) as client:
                gate = asyncio.Semaphore(inflight)
                last = 0.0

                async def one() -> None:
                    nonlocal last
                    async with gate:
                        await client.create_task("bench_noop", {"created": time.time()})
                        last = time.time()

                first = time.time()
                await asyncio.gather(*(one() for _ in range(count)))
                return first, last

        result: tuple[float, float] = self._run(work())
        return result

    def create_bulk(self, count: int, batch: int) -> tuple[float, float]:
        async def work() -> tuple[float, float]:
            from orchestrator_client import AsyncClient

            async with AsyncClient(self.target) as client:
                first = time.time()
                for start in range(0, count, batch):
                    size = min(batch, count - start)
                    now = time.time()
                    await client.batch_create_tasks(
                        {"type": "bench_noop", "payload": {"created": now}} for _ in range(size)
                    )
                return first, time.time()

        result: tuple[float, float] = self._run(work())
        return result

    def create_paced(self, count: int, rate: float) -> None:
        async def work() -> None:
            from orchestrator_client import AsyncClient

            async with AsyncClient(self.target) as client:
                for instant in paced(count, rate):
                    await asyncio.sleep(max(0.0, instant - time.time()))  # the pacing
                    await client.create_task("bench_noop", {"created": time.time()})

        self._run(work())

    def create_due(self, dues: Sequence[float]) -> None:
        async def work() -> None:
            from orchestrator_client import AsyncClient

            async with AsyncClient(self.target) as client:
                for due in dues:
                    payload = {"created": time.time(), "due": due}
                    await client.create_task("bench_noop", payload, run_at=_utc(due))

        self._run(work())


# -- the peers ------------------------------------------------------------------------------


class Peer(System):
    """A Python task queue whose client enqueues one task per call, from this process."""

    @abstractmethod
    def enqueue(self, created: float) -> None:
        """One task, due now."""

    def start_workers(self, name: str, args: Sequence[str], ready: str, count: int = 1) -> None:
        """Start the peer's worker command; ready once its log says ``ready`` ``count``
        times."""
        workers = self.spawn(name, args)

        def started() -> bool:
            self.check_alive()
            return workers.output().count(ready) >= count

        wait_until(started, 60, f"{name} workers ready")

    def create_single(self, count: int, inflight: int) -> tuple[float, float]:
        first = time.time()
        for _ in range(count):
            self.enqueue(time.time())
        return first, time.time()

    def create_paced(self, count: int, rate: float) -> None:
        for instant in paced(count, rate):
            sleep_until(instant)
            self.enqueue(time.time())


class RedisPeer(Peer):
    """A peer on the in-memory Redis server this bench starts (once, flushed per run)."""

    storage = "Redis in memory (not durable)"

    def setup(self) -> None:
        import os

        self.redis = RedisServer(self.workdir)
        os.environ["BENCH_REDIS_URL"] = self.redis.url  # read by the app modules at import

    def close(self) -> None:
        self.redis.stop()

    def env(self) -> dict[str, str]:
        return {**super().env(), "BENCH_REDIS_URL": self.redis.url}


class Huey(Peer):
    name = "Huey (SQLite)"
    storage = "SQLite (Huey's defaults)"
    bulk = "none: one call per task"

    def setup(self) -> None:
        import os

        self.database = self.workdir / "huey.db"
        os.environ["BENCH_HUEY_DB"] = str(self.database)  # read by the app module at import
        from bench.peers import huey_app

        self.task = huey_app.noop
        self.huey = huey_app.huey

    def env(self) -> dict[str, str]:
        return {**super().env(), "BENCH_HUEY_DB": str(self.database)}

    def start(self) -> None:
        self.huey.flush()  # an empty queue and schedule for each run
        self.start_workers(
            "huey",
            [
                executable("huey_consumer"), "bench.peers.huey_app.huey",
                "--workers", str(WORKERS), "--worker-type", "process",
            ],
            ready="started",
        )  # fmt: skip

    def enqueue(self, created: float) -> None:
        self.task(created)

    def create_due(self, dues: Sequence[float]) -> None:
        for due in dues:
            self.task.schedule(args=(time.time(), due), eta=_utc(due))


class Dramatiq(RedisPeer):
    name = "Dramatiq (Redis)"
    bulk = "none: one call per task"

    def setup(self) -> None:
        super().setup()
        from bench.peers import dramatiq_app

        self.actor = dramatiq_app.noop

    def start(self) -> None:
        self.redis.flush()
        self.start_workers(
            "dramatiq",
            [
                executable("dramatiq"), "bench.peers.dramatiq_app",
                "--processes", str(WORKERS),  # and its default 8 threads each
            ],
            ready="ready for action",
            count=WORKERS,
        )  # fmt: skip

    def enqueue(self, created: float) -> None:
        self.actor.send(created)

    def create_due(self, dues: Sequence[float]) -> None:
        for due in dues:
            now = time.time()
            self.actor.send_with_options(args=(now, due), delay=int((due - now) * 1000))


class Celery(RedisPeer):
    name = "Celery (Redis)"
    bulk = "group().apply_async()"

    def setup(self) -> None:
        super().setup()
        from bench.peers import celery_app

        self.task = celery_app.noop

    def start(self) -> None:
        self.redis.flush()
        self.start_workers(
            "celery",
            [
                executable("celery"), "-A", "bench.peers.celery_app", "worker",
                "--concurrency", str(WORKERS), "--pool", "prefork", "--loglevel", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            ready="ready.",
        )  # fmt: skip

    def enqueue(self, created: float) -> None:
        self.task.delay(created)

    def create_bulk(self, count: int, batch: int) -> tuple[float, float]:
        from celery import group

        first = time.time()
        for start in range(0, count, batch):
            now = time.time()
            group(self.task.s(now) for _ in range(min(batch, count - start))).apply_async()
        return first, time.time()

    def create_due(self, dues: Sequence[float]) -> None:
        for due in dues:
            self.task.apply_async(args=(time.time(), due), eta=_utc(due))


SYSTEMS: dict[str, type[System]] = {
    "orchestrator": Orchestrator,
    "huey": Huey,
    "dramatiq": Dramatiq,
    "celery": Celery,
}
