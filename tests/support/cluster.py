"""A cluster of real processes for one test: schedulers, workers, and channels to them."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from orchestrator.v1 import admin_service_pb2, admin_service_pb2_grpc, task_service_pb2_grpc

from .polling import eventually
from .processes import ManagedProcess, SchedulerProcess, scheduler_args, worker_args

if TYPE_CHECKING:  # the async stub classes exist only in the generated .pyi files
    from orchestrator.v1.admin_service_pb2_grpc import AdminServiceAsyncStub
    from orchestrator.v1.task_service_pb2_grpc import TaskServiceAsyncStub

# Short timings so that failure paths finish in seconds.
FAST_SCHEDULER = (
    "--heartbeat-interval", "0.5",
    "--lease-ttl", "2",
    "--reap-interval", "0.2",
    "--poll-interval", "0.05",
    "--shutdown-grace", "5",
    "--log-level", "debug",
)  # fmt: skip
FAST_WORKER = ("--foo-seconds", "0.2", "--shutdown-grace", "5", "--log-level", "debug")


class Cluster:
    def __init__(self, tmp_path: Path, database_url: str | None = None) -> None:
        self.dir = tmp_path
        self.database = tmp_path / "orchestrator.db"
        #: A postgresql:// URL when the cluster runs on PostgreSQL (the ``postgres`` param of
        #: the ``cluster`` fixture); None on SQLite, whose file is :attr:`database`.
        self.database_url = database_url
        self.schedulers: list[SchedulerProcess] = []
        self.workers: list[ManagedProcess] = []
        self._channels: list[grpc.aio.Channel] = []
        self._names = itertools.count(1)

    @property
    def location(self) -> Path | str:
        """Where the schedulers keep their tasks: the SQLite file, or the PostgreSQL URL
        (what the fault suite's checker reads)."""
        return self.database_url if self.database_url is not None else self.database

    # -- processes ---------------------------------------------------------------------

    async def start_scheduler(
        self,
        *extra: str,
        listen: str = "127.0.0.1:0",
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> SchedulerProcess:
        args = scheduler_args(self.database, *FAST_SCHEDULER, *extra)
        if self.database_url is not None:
            args[args.index("--database") + 1] = self.database_url
        args[args.index("--listen") + 1] = listen
        process = SchedulerProcess(name or f"scheduler{next(self._names)}", args, self.dir, env=env)
        self.schedulers.append(process)
        await process.wait_ready()
        return process

    async def restart_scheduler(self, old: SchedulerProcess, *extra: str) -> SchedulerProcess:
        """Start a scheduler on the same port as ``old`` (which must have exited)."""
        port = old.grpc_address.rpartition(":")[2]
        return await self.start_scheduler(*extra, listen=f"127.0.0.1:{port}", name=old.name)

    async def start_worker(
        self,
        *extra: str,
        scheduler: SchedulerProcess | None = None,
        worker_id: str | None = None,
        wait: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        target = scheduler or self.schedulers[0]
        name = worker_id or f"worker{next(self._names)}"
        process = ManagedProcess(
            name,
            worker_args(target.grpc_address, name, *FAST_WORKER, *extra),
            self.dir,
            env={
                "ORCHESTRATOR_OUTBOX_DIR": str(self.dir / "outbox"),
                "ORCHESTRATOR_REPORTS_DIR": str(self.dir / "reports"),
                **(extra_env or {}),
            },
        )
        self.workers.append(process)
        if wait:
            await self.wait_for_worker(name, target)
        return process

    async def wait_for_worker(
        self,
        worker_id: str,
        scheduler: SchedulerProcess | None = None,
        timeout: float = 20.0,  # noqa: ASYNC109 - passed on to eventually()
    ) -> None:
        admin = self.admin(scheduler)

        async def connected() -> bool:
            response = await admin.ListWorkers(admin_service_pb2.ListWorkersRequest())
            return any(w.id == worker_id for w in response.workers)

        process = next((w for w in self.workers if w.name == worker_id), None)
        try:
            await eventually(connected, timeout=timeout, message=f"worker {worker_id} connected")
        except AssertionError:
            if process is not None:
                raise AssertionError(process.dump()) from None
            raise

    # -- channels ----------------------------------------------------------------------------

    def channel(self, scheduler: SchedulerProcess | None = None) -> grpc.aio.Channel:
        target = (scheduler or self.schedulers[0]).grpc_address
        channel = grpc.aio.insecure_channel(target)
        self._channels.append(channel)
        return channel

    def tasks(self, scheduler: SchedulerProcess | None = None) -> TaskServiceAsyncStub:
        return task_service_pb2_grpc.TaskServiceStub(self.channel(scheduler))

    def admin(self, scheduler: SchedulerProcess | None = None) -> AdminServiceAsyncStub:
        return admin_service_pb2_grpc.AdminServiceStub(self.channel(scheduler))

    # -- teardown ----------------------------------------------------------------------------

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        for process in [*self.workers, *self.schedulers]:
            if process.running:
                process.signal(signal.SIGTERM)
        for process in [*self.workers, *self.schedulers]:
            process.wait(15)

    def dump(self) -> str:
        return "\n".join(p.dump() for p in [*self.schedulers, *self.workers])
