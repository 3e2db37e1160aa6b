"""SchedulerApp: builds the scheduler from its config and runs it until stopped.

Lifecycle (STYLE.md §5): :meth:`run` starts the store, the engine loops, the gRPC and HTTP
servers, then waits; :meth:`stop` (idempotent, called from ``__main__`` on SIGTERM) drains
workers for ``shutdown_grace``, stops the servers and closes the store. The engine loops
are named side tasks; if one dies unexpectedly the whole scheduler stops rather than limp.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from .api.admin_service import AdminServicer
from .api.server import GrpcServer, ServerLimits
from .api.task_service import TaskServicer
from .api.worker_service import WorkerServicer
from .config import SchedulerConfig
from .dev_worker import DevWorker
from .domain.clock import Clock, SystemClock
from .domain.model import MICROS_PER_SECOND
from .engine.admin import AdminOperations
from .engine.dispatcher import Dispatcher
from .engine.feed import ChangeFeed
from .engine.metrics import SchedulerMetrics
from .engine.reaper import LeaseReaper
from .engine.retention import RetentionPruner
from .engine.schedules import ScheduleOperations, ScheduleRunner
from .engine.task_types import KnownTaskTypes
from .engine.tasks import TaskOperations
from .http.dashboard import Dashboard
from .http.server import HttpServer, build_app
from .security.tokens import Identity, Role
from .store.base import Commit
from .store.factory import StoreSettings, open_store, redacted
from .tracing import SchedulerTracing, traced_worker_args

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Addresses:
    grpc: str
    http: str


class SchedulerApp:
    def __init__(self, config: SchedulerConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = SchedulerMetrics()
        # None unless --otlp-endpoint: OpenTelemetry is imported only then.
        self.tracing = SchedulerTracing.from_config(config)
        # SQLite for a path, PostgreSQL for a postgresql:// URL (store/factory.py).
        self.store = open_store(
            config.database,
            StoreSettings(
                clock=self.clock,
                priority_aging=int(config.priority_aging * MICROS_PER_SECOND),
                idempotency_retention=int(config.idempotency_retention * MICROS_PER_SECOND),
                schedule_grace=int(config.schedule_grace * MICROS_PER_SECOND),
                sqlite_synchronous=config.sqlite_synchronous,
                sqlite_crash_at=config.crash_at or None,
            ),
        )
        self.dispatcher = Dispatcher(
            self.store,
            self.clock,
            self.metrics,
            scheduler_id=config.scheduler_id,
            lease_ttl=int(config.lease_ttl * MICROS_PER_SECOND),
            poll_interval=config.poll_interval,
            tracing=self.tracing,
        )
        self.feed = ChangeFeed(self.store, self.clock, config.poll_interval)
        self.reaper = LeaseReaper(self.store, self.dispatcher, self.metrics, config.reap_interval)
        self.pruner = RetentionPruner(
            self.store, self.metrics, config.retention, config.prune_interval, config.prune_batch
        )
        self.schedule_runner = ScheduleRunner(
            self.store, self.clock, self.metrics, config.poll_interval
        )
        self.types = KnownTaskTypes(self.store)
        self.tasks = TaskOperations(
            self.store, self.dispatcher, self.types, self.metrics, self.clock
        )
        limits = config.limits
        self.guard = config.guard()
        # --with-worker under token auth: the development worker gets a token of its own,
        # made here and handed over in its environment (never on a command line).
        self._dev_worker_token = ""
        if config.with_worker and self.guard.tokens is not None:
            self._dev_worker_token = secrets.token_urlsafe(32)
            self.guard.tokens.add(self._dev_worker_token, Identity("dev-worker", Role.WORKER))
        self.grpc = GrpcServer(
            TaskServicer(
                self.tasks, self.feed, self.clock, limits, self.metrics, tracing=self.tracing
            ),
            WorkerServicer(
                self.dispatcher,
                self.clock,
                limits,
                self.metrics,
                heartbeat_interval=int(config.heartbeat_interval * MICROS_PER_SECOND),
            ),
            AdminServicer(
                self.store,
                self.dispatcher,
                ScheduleOperations(self.store, self.types, self.schedule_runner),
                self.clock,
                limits,
                self.metrics,
            ),
            guard=self.guard,
            limits=ServerLimits(
                max_message_bytes=config.max_message_bytes,
                max_concurrent_streams=config.max_concurrent_streams,
                max_concurrent_rpcs=config.max_concurrent_rpcs,
            ),
        )
        self.http: HttpServer | None = None
        self.dev_worker: DevWorker | None = None
        self._side_tasks: list[asyncio.Task[None]] = []
        self._ready = False
        self._stopped = asyncio.Event()
        self._stop_started = False
        self.addresses: Addresses | None = None
        self.store.add_commit_listener(self._on_commit)

    def _on_commit(self, commit: Commit) -> None:
        if not commit.claimed:
            # A claim that ran in this commit saw its every write already; waking for it
            # would only cost an empty claim transaction.
            self.dispatcher.wake()
        self.feed.notify(commit.revision)

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> Addresses:
        config = self.config
        await self.store.open()
        await self.store.register_task_types(list(config.task_types))
        await self.types.load()
        await self.feed.start()
        tls = config.tls
        port = self.grpc.bind(config.listen, tls.grpc_credentials() if tls else None)
        host = config.listen.rpartition(":")[0] or "127.0.0.1"
        grpc_address = f"{host}:{port}"
        await self.grpc.start()
        http_address = ""
        if config.http_enabled:
            http_app = build_app(
                self.metrics,
                lambda: self._ready,
                self.guard,
                refresh_metrics=lambda: self.metrics.refresh_queue_depth(
                    self.store.list_task_types
                ),
            )
            Dashboard(
                self.tasks,
                AdminOperations(self.store, self.dispatcher, self.clock),
                self.feed,
                self.clock,
                config.limits,
                self.guard,
                secure_cookies=tls is not None,
            ).add_routes(http_app)
            self.http = HttpServer(http_app)
            http_address = await self.http.start(
                config.http_listen, tls.http_context() if tls else None
            )
        for name, coro in (
            ("dispatcher", self.dispatcher.run()),
            ("lease-reaper", self.reaper.run()),
            ("change-feed", self.feed.run()),
            ("schedules", self.schedule_runner.run()),
        ):
            self._side_tasks.append(asyncio.create_task(coro, name=name))
        if config.retention.prunes_anything:  # else its loop would only sleep
            self._side_tasks.append(asyncio.create_task(self.pruner.run(), name="retention"))
        if config.with_worker:
            connect_host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]", "") else host
            self.dev_worker = DevWorker(
                f"{connect_host}:{port}",
                traced_worker_args(config),
                token=self._dev_worker_token,
            )
            self._side_tasks.append(asyncio.create_task(self.dev_worker.run(), name="dev-worker"))
            await self._wait_for_dev_worker()
        await self.grpc.set_serving(True)
        self._ready = True
        self.addresses = Addresses(grpc_address, http_address)
        log.info(
            "scheduler ready",
            extra={
                "grpc": grpc_address,
                "http": http_address or "off",
                "database": redacted(config.database),
                "scheduler_id": config.scheduler_id,
                "tls": "mutual" if tls and tls.mutual else "on" if tls else "off",
                "auth": _describe_auth(self.guard.tokens is not None, bool(tls and tls.mutual)),
            },
        )
        return self.addresses

    async def _wait_for_dev_worker(
        self,
        timeout: float = 30.0,  # noqa: ASYNC109 - a soft deadline: it logs and carries on
    ) -> None:
        """Readiness waits for the development worker, so its types are known at once."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.dispatcher.sessions:
            if asyncio.get_running_loop().time() > deadline:
                log.warning("development worker has not connected yet; continuing")
                return
            await asyncio.sleep(0.05)
        await self.types.load()

    async def run(self) -> None:
        """Start, then wait until :meth:`stop` or until a side task dies."""
        await self.start()
        stopped = asyncio.create_task(self._stopped.wait(), name="stopped")
        done, _ = await asyncio.wait(
            [stopped, *self._side_tasks], return_when=asyncio.FIRST_COMPLETED
        )
        if stopped in done or self._stop_started:
            # A stop is under way (it cancels the side tasks itself): let it finish.
            await self._stopped.wait()
            stopped.cancel()
            return
        stopped.cancel()
        for task in done:  # a side task ended on its own: the scheduler cannot go on
            error = None if task.cancelled() else task.exception()
            log.error("side task %s ended; stopping", task.get_name(), exc_info=error)
        await self.stop()
        raise SystemExit(1)

    async def stop(self) -> None:
        if self._stop_started:
            await self._stopped.wait()
            return
        self._stop_started = True
        log.info("scheduler stopping", extra={"grace_s": self.config.shutdown_grace})
        self._ready = False
        await self.grpc.set_serving(False)
        if self.dev_worker is not None:
            await self.dev_worker.stop(self.config.shutdown_grace)
        await self.dispatcher.drain(self.config.shutdown_grace)
        await self.grpc.stop(grace=1.0)
        for task in self._side_tasks:
            task.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        await self.store.close()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # exports the last spans
        self._stopped.set()
        log.info("scheduler stopped")


def _describe_auth(tokens: bool, certificates: bool) -> str:
    kinds = [name for name, on in (("tokens", tokens), ("client-certificates", certificates)) if on]
    return "+".join(kinds) or "off"
