"""The recurring-schedule RPCs of orchestrator.v1.AdminService (a part of AdminServicer)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from orchestrator.v1 import admin_service_pb2 as pb

from ..domain.clock import Clock
from ..domain.errors import InvalidArgument
from ..engine.metrics import SchedulerMetrics
from ..engine.schedules import ScheduleOperations
from ..security.access import Caller
from . import codec, page_tokens, validation
from .errors import unary
from .task_service import client_of
from .validation import Limits

_DEFAULT_PAGE = 100


class ScheduleRpcs:
    schedules: ScheduleOperations
    clock: Clock
    limits: Limits
    metrics: SchedulerMetrics

    def _schedule_id(self, field: str, value: str) -> str:
        if not value:
            raise InvalidArgument(field, "must not be empty")
        return validation.require_name(field, value, self.limits)

    @unary
    async def CreateSchedule(
        self,
        request: pb.CreateScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.Schedule:
        spec = validation.schedule_spec(
            request,
            schedule_id=request.schedule_id,
            client=client_of(caller, context, self.limits),
            now=self.clock.now(),
            limits=self.limits,
        )
        return codec.schedule_message(await self.schedules.create(spec))

    @unary
    async def GetSchedule(
        self,
        request: pb.GetScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.Schedule:
        record = await self.schedules.get(self._schedule_id("id", request.id))
        return codec.schedule_message(record)

    @unary
    async def ListSchedules(
        self,
        request: pb.ListSchedulesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.ListSchedulesResponse:
        size = validation.page_size(
            "page_size", request.page_size, _DEFAULT_PAGE, self.limits.max_page_size
        )
        after = page_tokens.decode(request.page_token, "schedules")
        records = await self.schedules.list(limit=size + 1, after_id=after)
        page = records[:size]
        more = len(records) > size
        return pb.ListSchedulesResponse(
            schedules=[codec.schedule_message(r) for r in page],
            next_page_token=page_tokens.encode(page[-1].id, "schedules") if more else "",
        )

    @unary
    async def DeleteSchedule(
        self,
        request: pb.DeleteScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> empty_pb2.Empty:
        await self.schedules.delete(self._schedule_id("id", request.id))
        return empty_pb2.Empty()

    @unary
    async def PauseSchedule(
        self,
        request: pb.PauseScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.Schedule:
        record = await self.schedules.set_paused(self._schedule_id("id", request.id), True)
        return codec.schedule_message(record)

    @unary
    async def ResumeSchedule(
        self,
        request: pb.ResumeScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        caller: Caller,
    ) -> pb.Schedule:
        record = await self.schedules.set_paused(self._schedule_id("id", request.id), False)
        return codec.schedule_message(record)
