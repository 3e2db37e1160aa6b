"""The gRPC server: servicers, health, reflection, message limits and keepalive policy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message as protobuf_message
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from orchestrator.v1 import admin_service_pb2, task_service_pb2, worker_service_pb2
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
    def __init__(self, tasks: TaskServicer, workers: WorkerServicer, admin: AdminServicer) -> None:
        self.server = grpc.aio.server(options=SERVER_OPTIONS)
        for module, name, servicer in (
            (task_service_pb2, "TaskService", tasks),
            (worker_service_pb2, "WorkerService", workers),
            (admin_service_pb2, "AdminService", admin),
        ):
            service = module.DESCRIPTOR.services_by_name[name]
            self.server.add_generic_rpc_handlers((checked_handler(service, servicer),))
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


def checked_handler(service: ServiceDescriptor, servicer: Any) -> grpc.GenericRpcHandler:
    """Method handlers that decode requests themselves, so that bytes which are not a
    valid message get INVALID_ARGUMENT naming the message type (grpcio's own decoding
    answers UNKNOWN), and the servicer method never sees them."""
    handlers = {
        method.name: _method_handler(method, getattr(servicer, method.name))
        for method in service.methods
    }
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


async def _invalid(context: grpc.aio.ServicerContext[Any, Any], name: str, exc: Exception) -> None:
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {name} message ({exc})"
    )


def _method_handler(
    method: MethodDescriptor, behaviour: Callable[..., Any]
) -> grpc.RpcMethodHandler[bytes, protobuf_message.Message]:
    request_class = GetMessageClass(method.input_type)
    name = method.input_type.full_name
    serialize = GetMessageClass(method.output_type).SerializeToString

    async def decode(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return request_class.FromString(raw)
        except protobuf_message.DecodeError as exc:
            await _invalid(context, name, exc)

    if method.client_streaming:

        async def stream_stream(
            raw_requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async def requests() -> AsyncIterator[Any]:
                async for raw in raw_requests:
                    yield await decode(raw, context)

            async for response in behaviour(requests(), context):
                yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, None, serialize)

    if method.server_streaming:

        async def unary_stream(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            request = await decode(raw, context)
            async for response in behaviour(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, None, serialize)

    async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await behaviour(await decode(raw, context), context)

    return grpc.unary_unary_rpc_method_handler(unary_unary, None, serialize)
