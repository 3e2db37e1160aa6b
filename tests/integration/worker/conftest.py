"""Fixtures of the worker's integration tests: a scripted scheduler on a real gRPC server,
probe handlers, and workers that are always stopped at the end."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.worker.doubles import Probe, ScriptedScheduler, ScriptedServer
from worker_service.config import WorkerConfig
from worker_service.errors import SchedulerRejected
from worker_service.registry import HandlerRegistry
from worker_service.worker import Worker


@pytest.fixture
async def scheduler() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer(ScriptedScheduler())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


MakeScheduler = Callable[[], Awaitable[ScriptedServer]]


@pytest.fixture
async def make_scheduler() -> AsyncIterator[MakeScheduler]:
    """More scripted schedulers (for failover), each stopped at the end."""
    servers: list[ScriptedServer] = []

    async def make() -> ScriptedServer:
        server = ScriptedServer(ScriptedScheduler())
        servers.append(server)
        await server.start()
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
def probe() -> Iterator[Probe]:
    probe = Probe()
    yield probe
    probe.thread_gate.set()  # never leave a thread handler behind


@dataclasses.dataclass
class RunningWorker:
    worker: Worker
    task: asyncio.Task[None]


StartWorker = Callable[..., RunningWorker]


@pytest.fixture
async def start_worker(
    scheduler: ScriptedServer, probe: Probe, tmp_path: Path
) -> AsyncIterator[StartWorker]:
    """``start_worker(slots=2, ...)``: a Worker on the probe's handlers, running in a task,
    connected to ``scheduler`` unless ``schedulers=(...)`` says otherwise."""
    started: list[RunningWorker] = []

    def start(registry: HandlerRegistry | None = None, **options: Any) -> RunningWorker:
        config = WorkerConfig(
            schedulers=tuple(options.pop("schedulers", (scheduler.address,))),
            worker_id="worker-under-test",
            slots=options.pop("slots", 4),
            shutdown_grace=options.pop("shutdown_grace", 1.0),
            reconnect_max_delay=options.pop("reconnect_max_delay", 0.2),
            cpu_workers=1,
            outbox_dir=tmp_path / "outbox",
            reports_dir=tmp_path / "reports",
            foo_seconds=0.0,
            **options,
        )
        worker = Worker(config, registry or probe.registry())
        running = RunningWorker(worker, asyncio.create_task(worker.run(), name="worker"))
        started.append(running)
        return running

    yield start
    probe.thread_gate.set()
    probe.release(*probe.gates)
    for running in started:
        with contextlib.suppress(SchedulerRejected):
            async with asyncio.timeout(15):
                await running.worker.stop()
                await running.task
