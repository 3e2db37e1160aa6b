"""Domain records to protobuf messages (the encoding half of the servicers)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from google.protobuf import struct_pb2

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2, worker_service_pb2
from orchestrator_client.convert import (
    duration_from_micros,
    struct_from_json,
    timestamp_from_micros,
)

from ..domain.explain import Explanation
from ..domain.model import (
    AttemptRecord,
    Change,
    Lease,
    Micros,
    Stats,
    TaskRecord,
    TaskSpec,
    TaskState,
    TaskTypeRecord,
    WorkerRecord,
)
from ..domain.schedules import ScheduleRecord
from ..tracing import lease_trace_context


def task_message(
    task: TaskRecord,
    now: Micros,
    *,
    full: bool,
    attempts: Sequence[AttemptRecord] | None = None,
    payload: struct_pb2.Struct | None = None,
) -> task_pb2.Task:
    """The Task message of ``task``; ``full`` adds payload, result and history.

    ``payload``, when given, is the task's payload already as a Struct (the create request
    that carried it): copied as it is instead of being rebuilt from JSON, which costs more
    than the rest of the message together.
    """
    b = task.backoff
    message = task_pb2.Task(
        id=task.id,
        type=task.type,
        state=task_pb2.TaskState.ValueType(task.visible_state(now)),
        priority=task.priority,
        run_at=timestamp_from_micros(task.run_at),
        max_attempts=task.max_attempts,
        backoff=task_pb2.BackoffPolicy(
            initial=duration_from_micros(b.initial),
            multiplier=b.multiplier,
            maximum=duration_from_micros(b.maximum),
            jitter=b.jitter,
        ),
        timeout=duration_from_micros(task.timeout),
        group=task.group,
        idempotency_key=task.idempotency_key,
        cache=task.cache,
        client=task.client,
        labels=dict(task.labels),
        error=task.error,
        attempts=task.attempts,
        created_at=timestamp_from_micros(task.created_at),
        updated_at=timestamp_from_micros(task.updated_at),
        due_at=timestamp_from_micros(task.due_at),
        revision=task.revision,
        worker_id=task.worker_id,
        lease_id=task.lease_id,
        on_failure=task_pb2.OnFailure.ValueType(int(task.on_failure)),
        concurrency_key=task.concurrency_key,
        cached=task.cached,
        cached_from=task.cached_from,
    )
    if task.progress is not None:
        progress = message.progress
        if task.progress.percent is not None:
            progress.percent = task.progress.percent
        progress.message = task.progress.message
        if task.progress.details_json:
            progress.details.CopyFrom(struct_from_json(task.progress.details_json))
        progress.updated_at.CopyFrom(timestamp_from_micros(task.progress.updated_at))
    if task.started_at is not None:
        message.started_at.CopyFrom(timestamp_from_micros(task.started_at))
    if task.finished_at is not None:
        message.finished_at.CopyFrom(timestamp_from_micros(task.finished_at))
    if full:
        message.payload.CopyFrom(
            payload if payload is not None else struct_from_json(task.payload_json)
        )
        if task.result_json is not None:
            message.result.CopyFrom(struct_from_json(task.result_json))
        for attempt in attempts or ():
            message.attempt_history.append(attempt_message(attempt))
        first = attempts[0] if attempts else None
        if first is not None and first.due_at is not None and first.finished_at is not None:
            # Lateness of the first start: the worker has reported when it began.
            message.lateness.CopyFrom(duration_from_micros(first.started_at - first.due_at))
    return message


def attempt_message(attempt: AttemptRecord) -> task_pb2.Attempt:
    message = task_pb2.Attempt(
        number=attempt.number,
        worker_id=attempt.worker_id,
        lease_id=attempt.lease_id,
        started_at=timestamp_from_micros(attempt.started_at),
        outcome=task_pb2.AttemptOutcome.ValueType(attempt.outcome),
        error=attempt.error,
    )
    if attempt.finished_at is not None:
        message.finished_at.CopyFrom(timestamp_from_micros(attempt.finished_at))
    if attempt.due_at is not None:
        message.due_at.CopyFrom(timestamp_from_micros(attempt.due_at))
    if attempt.leased_at is not None:
        message.leased_at.CopyFrom(timestamp_from_micros(attempt.leased_at))
    return message


def event_message(change: Change, now: Micros, *, full: bool) -> task_service_pb2.TaskEvent:
    if change.task is None:
        return task_service_pb2.TaskEvent(
            type=task_service_pb2.TASK_EVENT_TYPE_DELETED,
            task=task_pb2.Task(id=change.task_id, type=change.type),
            revision=change.revision,
        )
    return task_service_pb2.TaskEvent(
        type=task_service_pb2.TASK_EVENT_TYPE_UPSERTED,
        task=task_message(change.task, now, full=full),
        revision=change.revision,
    )


def counts_message(counts: Mapping[TaskState, int]) -> admin_service_pb2.TaskCounts:
    return admin_service_pb2.TaskCounts(
        scheduled=counts.get(TaskState.SCHEDULED, 0),
        pending=counts.get(TaskState.PENDING, 0),
        running=counts.get(TaskState.RUNNING, 0),
        succeeded=counts.get(TaskState.SUCCEEDED, 0),
        failed=counts.get(TaskState.FAILED, 0),
        cancelled=counts.get(TaskState.CANCELLED, 0),
    )


def task_type_message(record: TaskTypeRecord, connected_workers: int) -> admin_service_pb2.TaskType:
    return admin_service_pb2.TaskType(
        name=record.name,
        state=(
            admin_service_pb2.TASK_TYPE_STATE_PAUSED
            if record.paused
            else admin_service_pb2.TASK_TYPE_STATE_ACTIVE
        ),
        counts=counts_message(record.counts),
        connected_workers=connected_workers,
        first_seen_at=timestamp_from_micros(record.first_seen_at),
        limits=task_pb2.ConcurrencyLimits(
            max_running=record.limits.max_running, max_per_second=record.limits.max_per_second
        ),
    )


def worker_message(worker: WorkerRecord) -> admin_service_pb2.Worker:
    return admin_service_pb2.Worker(
        id=worker.worker_id,
        hostname=worker.hostname,
        pid=worker.pid,
        version=worker.version,
        task_types=list(worker.task_types),
        slots=worker.slots,
        in_flight=worker.in_flight,
        connected_at=timestamp_from_micros(worker.connected_at),
        last_heartbeat_at=timestamp_from_micros(worker.last_heartbeat_at),
        scheduler_id=worker.scheduler_id,
        draining=worker.draining,
    )


def stats_message(stats: Stats, connected_workers: int) -> admin_service_pb2.GetStatsResponse:
    message = admin_service_pb2.GetStatsResponse(
        totals=counts_message(stats.totals),
        by_type=[
            admin_service_pb2.TypeStats(type=name, counts=counts_message(counts))
            for name, counts in sorted(stats.by_type.items())
        ],
        retries=stats.retries,
        over_retry_limit=stats.over_retry_limit,
        most_retried=[
            admin_service_pb2.TaskRetries(
                task_id=task_id, type=type_name, attempts=attempts, max_attempts=max_attempts
            )
            for task_id, type_name, attempts, max_attempts in stats.most_retried
        ],
        finished_last_minute=stats.finished_last_minute,
        throughput_per_second=stats.finished_last_minute / 60.0,
        connected_workers=connected_workers,
    )
    if stats.lateness:
        samples = stats.lateness  # ascending
        message.lateness_p50.CopyFrom(duration_from_micros(_percentile(samples, 0.50)))
        message.lateness_p99.CopyFrom(duration_from_micros(_percentile(samples, 0.99)))
        message.lateness_max.CopyFrom(duration_from_micros(samples[-1]))
        message.lateness_samples = len(samples)
    return message


def _percentile(ascending: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of sorted samples."""
    rank = max(1, math.ceil(fraction * len(ascending)))
    return ascending[rank - 1]


def explanation_message(
    task: TaskRecord, explanation: Explanation, now: Micros
) -> task_service_pb2.ExplainTaskResponse:
    message = task_service_pb2.ExplainTaskResponse(
        task_id=task.id,
        state=task_pb2.TaskState.ValueType(int(task.visible_state(now))),
        summary=explanation.summary,
        tasks_ahead=explanation.tasks_ahead,
    )
    for reason in explanation.reasons:
        item = message.reasons.add(
            code=task_service_pb2.ReasonCode.ValueType(int(reason.code)),
            message=reason.message,
            blocking_task_id=reason.blocking_task_id,
        )
        if reason.until is not None:
            item.until.CopyFrom(timestamp_from_micros(reason.until))
    return message


def lease_message(lease: Lease) -> worker_service_pb2.Lease:
    message = worker_service_pb2.Lease(
        lease_id=lease.lease_id,
        task_id=lease.task_id,
        type=lease.type,
        payload_json=lease.payload_json.encode(),
        attempt=lease.attempt,
        max_attempts=lease.max_attempts,
        timeout=duration_from_micros(lease.timeout),
        created_at=timestamp_from_micros(lease.created_at),
        labels=dict(lease.labels),
    )
    if lease.trace_context:  # only traced creates: nothing to decode otherwise
        message.trace_context.update(lease_trace_context(lease.trace_context))
    return message


def create_request(spec: TaskSpec) -> task_service_pb2.CreateTaskRequest:
    """A task template back as the request that describes it (for Schedule.template)."""
    b = spec.backoff
    request = task_service_pb2.CreateTaskRequest(
        type=spec.type,
        payload=struct_from_json(spec.payload_json),
        priority=spec.priority,
        max_attempts=spec.max_attempts,
        backoff=task_pb2.BackoffPolicy(
            initial=duration_from_micros(b.initial),
            multiplier=b.multiplier,
            maximum=duration_from_micros(b.maximum),
            jitter=b.jitter,
        ),
        timeout=duration_from_micros(spec.timeout),
        group=spec.group,
        cache=spec.cache,
        labels=dict(spec.labels),
        on_failure=task_pb2.OnFailure.ValueType(int(spec.on_failure)),
        concurrency_key=spec.concurrency_key,
    )
    if spec.key_limits is not None:
        request.concurrency_limits.CopyFrom(
            task_pb2.ConcurrencyLimits(
                max_running=spec.key_limits.max_running,
                max_per_second=spec.key_limits.max_per_second,
            )
        )
    if spec.cache_max_age is not None:
        request.cache_max_age.CopyFrom(duration_from_micros(spec.cache_max_age))
    return request


def schedule_message(record: ScheduleRecord) -> admin_service_pb2.Schedule:
    message = admin_service_pb2.Schedule(
        id=record.id,
        cron=record.cron,
        time_zone=record.time_zone,
        template=create_request(record.template),
        state=(
            admin_service_pb2.SCHEDULE_STATE_PAUSED
            if record.paused
            else admin_service_pb2.SCHEDULE_STATE_ACTIVE
        ),
        catch_up=admin_service_pb2.CatchUp.ValueType(int(record.catch_up)),
        next_fire_at=timestamp_from_micros(record.next_fire_at),
        last_task_id=record.last_task_id,
        fired_count=record.fired_count,
        created_at=timestamp_from_micros(record.created_at),
    )
    if record.last_fire_at is not None:
        message.last_fire_at.CopyFrom(timestamp_from_micros(record.last_fire_at))
    return message
