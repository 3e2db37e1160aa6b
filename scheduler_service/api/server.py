"""The gRPC server: servicers, health, reflection, message limits and keepalive policy."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from orchestrator.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from orchestrator_client.protocol import MAX_MESSAGE_BYTES

from .admin_service import AdminServicer
from .task_service import TaskServicer
from .worker_service import WorkerServicer

SERVICE_NAMES = (
    task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Clients and workers ping every 10 s (orchestrator_client.channel); allow it, and
    # ping back so that a silently dead peer is noticed on this side too.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.max_ping_strikes", 0),
]


class GrpcServer:
    def __init__(
        self, tasks: TaskServicer, workers: WorkerServicer, admin: AdminServicer
    ) -> None:
        self.server = grpc.aio.server(options=SERVER_OPTIONS)
        task_service_pb2_grpc.add_TaskServiceServicer_to_server(tasks, self.server)
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(workers, self.server)
        admin_service_pb2_grpc.add_AdminServiceServicer_to_server(admin, self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.port = 0

    def bind(self, address: str) -> int:
        self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        return self.port

    async def start(self) -> None:
        await self.server.start()

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)
