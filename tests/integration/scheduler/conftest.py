from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from orchestrator.v1 import (
    admin_service_pb2_grpc,
    task_service_pb2_grpc,
    worker_service_pb2_grpc,
)
from scheduler_service.app import SchedulerApp
from scheduler_service.config import SchedulerConfig
from tests.conftest import backend_params

if TYPE_CHECKING:  # the async stub classes exist only in the generated .pyi files
    from orchestrator.v1.admin_service_pb2_grpc import AdminServiceAsyncStub
    from orchestrator.v1.task_service_pb2_grpc import TaskServiceAsyncStub
    from orchestrator.v1.worker_service_pb2_grpc import WorkerServiceAsyncStub


@dataclass
class InProcess:
    app: SchedulerApp
    channel: grpc.aio.Channel
    tasks: TaskServiceAsyncStub
    admin: AdminServiceAsyncStub
    workers: WorkerServiceAsyncStub


@pytest.fixture(params=backend_params())
async def scheduler(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[InProcess]:
    """A real scheduler (gRPC on a loopback port) inside the test's loop, on an SQLite file
    or on a PostgreSQL database of its own (both, by default)."""
    on_postgres = request.param == "postgres"
    database = request.getfixturevalue("postgres_url") if on_postgres else str(tmp_path / "api.db")
    config = SchedulerConfig(
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        database=database,
        scheduler_id="test",
        task_types=("foo", "sum2"),
        heartbeat_interval=0.5,
        lease_ttl=2.0,
        reap_interval=0.1,
        poll_interval=0.05,
        shutdown_grace=1.0,
    )
    app = SchedulerApp(config)
    addresses = await app.start()
    channel = grpc.aio.insecure_channel(addresses.grpc)
    try:
        yield InProcess(
            app,
            channel,
            task_service_pb2_grpc.TaskServiceStub(channel),
            admin_service_pb2_grpc.AdminServiceStub(channel),
            worker_service_pb2_grpc.WorkerServiceStub(channel),
        )
    finally:
        await channel.close()
        await app.stop()
