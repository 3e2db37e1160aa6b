"""orchestrator.v1.AdminService: task types, workers and statistics for operators."""

from __future__ import annotations

from typing import Any

import grpc

from orchestrator.v1 import admin_service_pb2 as pb

from ..domain.clock import Clock
from ..engine.admin import AdminOperations
from ..engine.dispatcher import Dispatcher
from ..engine.metrics import SchedulerMetrics
from ..engine.schedules import ScheduleOperations
from ..security.access import Caller
from ..store.base import TaskStore
from . import codec, page_tokens, validation
from .errors import unary
from .schedule_rpcs import ScheduleRpcs
from .validation import Limits

_DEFAULT_PAGE = 100


class AdminServicer(ScheduleRpcs):
    """Every method needs the admin role when authentication is on (security.access)."""

    def __init__(
        self,
        store: TaskStore,
        dispatcher: Dispatcher,
        schedules: ScheduleOperations,
        clock: Clock,
        limits: Limits,
        metrics: SchedulerMetrics,
    ) -> None:
        self.schedules = schedules
        self.store = store
        self.dispatcher = dispatcher
        self.clock = clock
        self.limits = limits
        self.metrics = metrics
        self.operations = AdminOperations(store, dispatcher, clock)

    @unary
    async def ListTaskTypes(
        self,
        request: pb.ListTaskTypesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.ListTaskTypesResponse:
        size = validation.page_size(
            "page_size", request.page_size, _DEFAULT_PAGE, self.limits.max_page_size
        )
        after = page_tokens.decode(request.page_token, "task_types")
        records = [r for r in await self.operations.task_types() if after is None or r.name > after]
        workers = await self.operations.workers_by_type()
        page = records[:size]
        more = len(records) > size
        return pb.ListTaskTypesResponse(
            task_types=[codec.task_type_message(r, workers.get(r.name, 0)) for r in page],
            next_page_token=page_tokens.encode(page[-1].name, "task_types") if more else "",
        )

    @unary
    async def SetTaskTypeLimits(
        self,
        request: pb.SetTaskTypeLimitsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.TaskType:
        validation.require_type("type", request.type)
        limits = validation.concurrency_limits("limits", request.limits)
        record = await self.store.set_task_type_limits(request.type, limits)
        self.dispatcher.wake()  # a raised limit may let waiting tasks go at once
        workers = await self.operations.workers_by_type()
        return codec.task_type_message(record, workers.get(request.type, 0))

    async def _set_paused(self, field: str, name: str, paused: bool) -> pb.TaskType:
        validation.require_type(field, name)
        record = await self.operations.set_paused(name, paused)
        workers = await self.operations.workers_by_type()
        return codec.task_type_message(record, workers.get(name, 0))

    @unary
    async def PauseTaskType(
        self,
        request: pb.PauseTaskTypeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.TaskType:
        return await self._set_paused("type", request.type, True)

    @unary
    async def ResumeTaskType(
        self,
        request: pb.ResumeTaskTypeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.TaskType:
        return await self._set_paused("type", request.type, False)

    @unary
    async def ListWorkers(
        self,
        request: pb.ListWorkersRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.ListWorkersResponse:
        size = validation.page_size(
            "page_size", request.page_size, _DEFAULT_PAGE, self.limits.max_page_size
        )
        after = page_tokens.decode(request.page_token, "workers")
        workers = [
            w
            for w in await self.operations.live_workers()
            if after is None or f"{w.worker_id}/{w.session_id}" > after
        ]
        page = workers[:size]
        more = len(workers) > size
        last = f"{page[-1].worker_id}/{page[-1].session_id}" if more else ""
        return pb.ListWorkersResponse(
            workers=[codec.worker_message(w) for w in page],
            next_page_token=page_tokens.encode(last, "workers") if more else "",
        )

    @unary
    async def GetStats(
        self,
        request: pb.GetStatsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.GetStatsResponse:
        stats = await self.operations.stats()
        return codec.stats_message(stats, len(await self.operations.live_workers()))
