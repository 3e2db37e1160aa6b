"""A real scheduler configured by a TOML file, under its flags and variables."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from orchestrator.v1 import admin_service_pb2, task_service_pb2
from tests.support.cluster import Cluster


def _payload(size: int) -> struct_pb2.Struct:
    payload = struct_pb2.Struct()
    payload.update({"data": "x" * size})
    return payload


async def test_scheduler_takes_its_options_from_a_toml_file(cluster: Cluster) -> None:
    config = cluster.dir / "scheduler.toml"
    config.write_text(
        """
        scheduler-id = "from-toml"
        task_types = ["from_toml_type"]
        max_payload_bytes = 2048      # the variable below wins
        lease_ttl = 99                # the test's --lease-ttl flag wins
        listen = "127.0.0.1:1"        # the test's --listen flag wins
        """
    )
    scheduler = await cluster.start_scheduler(
        "--config", str(config), env={"ORCHESTRATOR_MAX_PAYLOAD_BYTES": "4096"}
    )

    # From the file: the id in the ready line, the type in the API.
    assert "scheduler_id=from-toml" in scheduler.own_stderr()
    types = await cluster.admin().ListTaskTypes(admin_service_pb2.ListTaskTypesRequest())
    assert "from_toml_type" in [t.name for t in types.task_types]
    # The flag beat the file's address.
    assert not scheduler.grpc_address.endswith(":1")

    # The variable (4096) beat the file (2048), which beat the default (1 MiB).
    tasks = cluster.tasks()
    accepted = await tasks.CreateTask(
        task_service_pb2.CreateTaskRequest(type="from_toml_type", payload=_payload(3000))
    )
    assert accepted.id
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await tasks.CreateTask(
            task_service_pb2.CreateTaskRequest(type="from_toml_type", payload=_payload(5000))
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_bad_key_stops_the_scheduler_with_status_2(cluster: Cluster) -> None:
    config = cluster.dir / "scheduler.toml"
    config.write_text('lease_tll = 30\nlog_level = "loud"\n')
    with pytest.raises(AssertionError, match="scheduler exited early"):
        await cluster.start_scheduler("--config", str(config))
    process = cluster.schedulers[-1]
    assert process.wait(10) == 2
    assert f"config file {config}: unknown key 'lease_tll'" in process.stderr()
