"""The gRPC server: servicers, health, reflection, access control, limits and keepalive.

Every method of every service — ours, health and reflection — goes through one handler
made by :func:`checked_handler`: it asks the :class:`~scheduler_service.security.access.Guard`
who is calling (refusing the call before its request is even decoded), decodes the request
itself, and calls the servicer method; this project's servicers get the
:class:`~scheduler_service.security.access.Caller` as a third argument.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message as protobuf_message
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from orchestrator.v1 import admin_service_pb2, task_service_pb2, worker_service_pb2
from orchestrator_client.protocol import MAX_MESSAGE_BYTES

from ..security.access import AccessDenied, Guard, missing_rules
from .admin_service import AdminServicer
from .task_service import TaskServicer
from .worker_service import WorkerServicer

log = logging.getLogger(__name__)

TASK_SERVICE = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"]
WORKER_SERVICE = worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"]
ADMIN_SERVICE = admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"]
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"]
REFLECTION_SERVICE = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
#: Every service the server registers (the access table must cover each of their methods).
REGISTERED_SERVICES = (
    TASK_SERVICE,
    WORKER_SERVICE,
    ADMIN_SERVICE,
    HEALTH_SERVICE,
    REFLECTION_SERVICE,
)
SERVICE_NAMES = (TASK_SERVICE.full_name, WORKER_SERVICE.full_name, ADMIN_SERVICE.full_name)


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts (``--max-message-bytes`` and friends)."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    #: HTTP/2 streams (calls) at once on one client connection; more wait their turn.
    max_concurrent_streams: int = 1000
    #: Calls in progress on the whole server; more are answered RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = 10_000


def server_options(limits: ServerLimits) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
        # Clients and workers ping every 10 s (orchestrator_client.channel); allow it, and
        # ping them after 5 s without a byte from them, so that a silently dead peer is
        # noticed on this side within 10 s (its leases then go back at once).
        ("grpc.keepalive_time_ms", 5_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        # Any ping in flight waits this long for its answer (gRPC's default is a minute).
        ("grpc.http2.ping_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Enforcement: pings more often than every 5 s are strikes; two strikes and the
        # connection is closed (GOAWAY "too_many_pings"), so no peer can flood us with pings.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.http2.max_pings_without_data", 0),
    ]


#: The options of a server with the default limits.
SERVER_OPTIONS = server_options(ServerLimits())


class GrpcServer:
    def __init__(
        self,
        tasks: TaskServicer,
        workers: WorkerServicer,
        admin: AdminServicer,
        *,
        guard: Guard | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.guard = guard or Guard()
        limits = limits or ServerLimits()
        self.server = grpc.aio.server(
            options=server_options(limits), maximum_concurrent_rpcs=limits.max_concurrent_rpcs
        )
        missing = missing_rules(REGISTERED_SERVICES, self.guard.rules)
        if missing:
            raise RuntimeError(f"methods without an access rule: {', '.join(missing)}")
        self.health = health.aio.HealthServicer()
        reflection_servicer = reflection.aio.ReflectionServicer(
            (*SERVICE_NAMES, HEALTH_SERVICE.full_name, REFLECTION_SERVICE.full_name)
        )
        for service, servicer, with_caller in (
            (TASK_SERVICE, tasks, True),
            (WORKER_SERVICE, workers, True),
            (ADMIN_SERVICE, admin, True),
            (HEALTH_SERVICE, self.health, False),
            (REFLECTION_SERVICE, reflection_servicer, False),
        ):
            handler = checked_handler(service, servicer, self.guard, with_caller=with_caller)
            self.server.add_generic_rpc_handlers((handler,))
        self.port = 0

    def bind(self, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
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


def checked_handler(
    service: ServiceDescriptor, servicer: Any, guard: Guard, *, with_caller: bool
) -> grpc.GenericRpcHandler:
    """Method handlers that check access, then decode requests themselves, so that bytes
    which are not a valid message get INVALID_ARGUMENT naming the message type (grpcio's own
    decoding answers UNKNOWN), and the servicer method never sees them."""
    handlers = {
        method.name: _method_handler(
            method,
            f"/{service.full_name}/{method.name}",
            getattr(servicer, method.name, None),
            guard,
            with_caller,
        )
        for method in service.methods
    }
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


async def _invalid(context: grpc.aio.ServicerContext[Any, Any], name: str, exc: Exception) -> None:
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {name} message ({exc})"
    )


def _is_async(behaviour: Callable[..., Any] | None) -> bool:
    return inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)


def _method_handler(
    method: MethodDescriptor,
    full_name: str,
    behaviour: Callable[..., Any] | None,
    guard: Guard,
    with_caller: bool,
) -> grpc.RpcMethodHandler[bytes, protobuf_message.Message]:
    request_class = GetMessageClass(method.input_type)
    name = method.input_type.full_name
    serialize = GetMessageClass(method.output_type).SerializeToString
    implemented = _is_async(behaviour)

    async def admit(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[Any, ...]:
        """The servicer's arguments after the request: ``(context, caller)`` or
        ``(context,)``; a refused call is aborted here, before anything else happens."""
        try:
            caller = guard.check(
                full_name, context.invocation_metadata() or (), context.auth_context()
            )
        except AccessDenied as denied:
            # The reason and the peer, never the credentials themselves.
            log.warning(
                "call refused: %s",
                denied.message,
                extra={"method": full_name, "code": denied.code.name, "peer": context.peer()},
            )
            await context.abort(denied.code, denied.message)
        if not implemented:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{full_name} is not implemented")
        return (context, caller) if with_caller else (context,)

    async def decode(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return request_class.FromString(raw)
        except protobuf_message.DecodeError as exc:
            await _invalid(context, name, exc)

    assert behaviour is not None or not implemented
    if method.client_streaming:

        async def stream_stream(
            raw_requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            rest = await admit(context)

            async def requests() -> AsyncIterator[Any]:
                async for raw in raw_requests:
                    yield await decode(raw, context)

            assert behaviour is not None
            async for response in behaviour(requests(), *rest):
                yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, None, serialize)

    if method.server_streaming and inspect.iscoroutinefunction(behaviour):
        # A servicer that answers with context.write() rather than yielding (the health
        # service's Watch): a coroutine, not an async generator.

        async def unary_stream_writing(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> None:
            rest = await admit(context)
            request = await decode(raw, context)
            assert behaviour is not None
            await behaviour(request, *rest)

        return grpc.unary_stream_rpc_method_handler(unary_stream_writing, None, serialize)

    if method.server_streaming:

        async def unary_stream(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            rest = await admit(context)
            request = await decode(raw, context)
            assert behaviour is not None
            async for response in behaviour(request, *rest):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, None, serialize)

    async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        rest = await admit(context)
        assert behaviour is not None
        return await behaviour(await decode(raw, context), *rest)

    return grpc.unary_unary_rpc_method_handler(unary_unary, None, serialize)
