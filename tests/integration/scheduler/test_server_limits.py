"""Server limits (message size, calls in progress) and the database files' mode."""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from orchestrator.v1 import task_service_pb2, task_service_pb2_grpc
from scheduler_service.app import SchedulerApp
from scheduler_service.config import SchedulerConfig


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **options: object) -> AsyncIterator[SchedulerApp]:
    config = SchedulerConfig(
        listen="127.0.0.1:0",
        http_listen="off",
        database=str(tmp_path / "limits.db"),
        scheduler_id="limits",
        task_types=("sum2",),
        shutdown_grace=0.5,
        **options,  # type: ignore[arg-type]
    )
    app = SchedulerApp(config)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def test_a_message_over_the_limit_is_resource_exhausted(tmp_path: Path) -> None:
    async with running(tmp_path, max_payload_bytes=1024, max_message_bytes=64 * 1024) as app:
        assert app.addresses is not None
        big = 16 * 1024 * 1024
        options = [("grpc.max_send_message_length", big), ("grpc.max_receive_message_length", big)]
        async with grpc.aio.insecure_channel(app.addresses.grpc, options=options) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            payload = struct_pb2.Struct()
            payload.update({"blob": "x" * (100 * 1024)})
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.CreateTask(
                    task_service_pb2.CreateTaskRequest(type="sum2", payload=payload)
                )
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Under the message limit, the payload limit answers with the field's name.
            payload.update({"blob": "x" * 2000})
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.CreateTask(
                    task_service_pb2.CreateTaskRequest(type="sum2", payload=payload)
                )
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            ok = await stub.CreateTask(task_service_pb2.CreateTaskRequest(type="sum2"))
            assert ok.id


async def test_calls_beyond_the_server_limit_are_resource_exhausted(tmp_path: Path) -> None:
    async with running(tmp_path, max_concurrent_rpcs=2) as app:
        assert app.addresses is not None
        async with grpc.aio.insecure_channel(app.addresses.grpc) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            watches = [stub.WatchTasks(task_service_pb2.WatchTasksRequest()) for _ in range(2)]
            try:
                # Both watches are in progress once the server has them (they send nothing).
                await asyncio.sleep(0.3)
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.ListTasks(task_service_pb2.ListTasksRequest(), timeout=5)
                assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            finally:
                for watch in watches:
                    watch.cancel()
            for _ in range(50):  # the cancelled watches end on the server shortly
                try:
                    await stub.ListTasks(task_service_pb2.ListTasksRequest(), timeout=5)
                    break
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the server stayed full after the watches ended")


async def test_the_database_files_are_private(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        assert app.addresses is not None
        async with grpc.aio.insecure_channel(app.addresses.grpc) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            await stub.CreateTask(task_service_pb2.CreateTaskRequest(type="sum2"))
        names = sorted(p.name for p in tmp_path.iterdir())
        assert {"limits.db", "limits.db-wal", "limits.db-shm", "limits.db-writer.lock"} <= set(
            names
        ), names
        for name in names:
            mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
            assert mode == 0o600, f"{name} is {mode:04o}"
