"""Credentials for tests of a scheduler with authentication: token files and channels."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from orchestrator.v1 import admin_service_pb2, admin_service_pb2_grpc, task_service_pb2_grpc
from orchestrator_client.channel import TlsConfig, call_metadata, open_channel

from .pki import Pair, write_private
from .polling import eventually

if TYPE_CHECKING:  # the async stub classes exist only in the generated .pyi files
    from orchestrator.v1.admin_service_pb2_grpc import AdminServiceAsyncStub
    from orchestrator.v1.task_service_pb2_grpc import TaskServiceAsyncStub


def write_tokens(path: Path, tokens: Mapping[str, tuple[str, str]]) -> Path:
    """A tokens file (0600): token -> (role, principal)."""
    lines = ["# token role principal"]
    lines += [f"{token} {role} {principal}" for token, (role, principal) in tokens.items()]
    return write_private(path, ("\n".join(lines) + "\n").encode())


def tls_config(ca: Path, pair: Pair | None = None, server_name: str | None = None) -> TlsConfig:
    return TlsConfig(
        ca_file=str(ca),
        cert_file=str(pair.cert) if pair else None,
        key_file=str(pair.key) if pair else None,
        server_name=server_name,
    )


class Credentials:
    """Channels to one scheduler as one caller; closes them all at the end."""

    def __init__(self, address: str, *, token: str | None = None, tls: TlsConfig | None = None):
        self.address = address
        self.token = token
        self.tls = tls
        self.metadata = call_metadata(token, tls)
        self._channels: list[grpc.aio.Channel] = []

    def channel(self) -> grpc.aio.Channel:
        channel = open_channel(self.address, tls=self.tls, token=self.token)
        self._channels.append(channel)
        return channel

    def tasks(self) -> TaskServiceAsyncStub:
        return task_service_pb2_grpc.TaskServiceStub(self.channel())

    def admin(self) -> AdminServiceAsyncStub:
        return admin_service_pb2_grpc.AdminServiceStub(self.channel())

    async def wait_for_worker(self, worker_id: str) -> None:
        """Until ``worker_id`` is connected, as ListWorkers (for an admin) says."""
        stub = self.admin()

        async def connected() -> bool:
            answer = await stub.ListWorkers(
                admin_service_pb2.ListWorkersRequest(), metadata=self.metadata
            )
            return any(w.id == worker_id for w in answer.workers)

        await eventually(connected, timeout=20, message=f"worker {worker_id} connected")

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
