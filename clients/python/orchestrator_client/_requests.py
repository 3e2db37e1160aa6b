"""Request messages built from the library's keyword arguments.

Kept apart from the client so that the rules (``delay`` or ``run_at`` but not both, states by
name, seconds as ``Duration``, key limits only with a key) are checked, and unit-tested,
before any I/O.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2

from ._states import StateLike, parse_states
from .convert import duration_from_seconds, struct_from_dict, timestamp_from_datetime

if TYPE_CHECKING:
    # The generic base the generated enum stubs use; there is no public name for it.
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

E = TypeVar("E", bound=int)


@dataclass(frozen=True)
class Backoff:
    """The retry backoff of a task; ``None`` fields take the scheduler's defaults.

    The n-th retry waits ``min(initial * multiplier**(n-1), maximum)`` seconds, shortened by
    up to ``jitter`` of itself at random (see ``BackoffPolicy`` in ``task.proto``).
    """

    initial: float | None = None
    multiplier: float | None = None
    maximum: float | None = None
    jitter: float | None = None

    def to_proto(self) -> task_pb2.BackoffPolicy:
        message = task_pb2.BackoffPolicy()
        if self.initial is not None:
            message.initial.CopyFrom(duration_from_seconds(self.initial))
        if self.multiplier is not None:
            message.multiplier = self.multiplier
        if self.maximum is not None:
            message.maximum.CopyFrom(duration_from_seconds(self.maximum))
        if self.jitter is not None:
            message.jitter = self.jitter
        return message


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: What a task's group does if the task ends FAILED: ``"block"`` (the default) or ``"skip"``,
#: in any case, or an ``OnFailure`` value.
OnFailureLike: TypeAlias = task_pb2.OnFailure.ValueType | str

#: What a schedule does with slots it missed: ``"latest"`` (the default), ``"skip"`` or
#: ``"all"``, in any case, or a ``CatchUp`` value.
CatchUpLike: TypeAlias = admin_service_pb2.CatchUp.ValueType | str


def _parse_enum(enum: _EnumTypeWrapper[E], prefix: str, value: E | str, what: str) -> E:
    """The value of ``enum`` named ``value`` (with or without ``prefix``, in any case), or
    ``value`` itself when it is one of the enum's numbers.

    ``UNSPECIFIED`` is accepted as a number (it means the default), but not by name: someone
    who types a name means one of the real behaviours.
    """
    if isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith(prefix):
            name = prefix + name
        if name != prefix + "UNSPECIFIED":
            with contextlib.suppress(ValueError):
                return enum.Value(name)
    elif value in enum.values():
        return value
    names = [
        repr(n.removeprefix(prefix).lower()) for n, _ in enum.items() if n != prefix + "UNSPECIFIED"
    ]
    choices = ", ".join(names[:-1]) + " or " + names[-1]
    raise ValueError(f"unknown {what} {value!r}; expected {choices}")


def parse_on_failure(value: OnFailureLike) -> task_pb2.OnFailure.ValueType:
    """The enum value for ``value``; ``ValueError`` naming the valid choices otherwise."""
    return _parse_enum(task_pb2.OnFailure, "ON_FAILURE_", value, "on_failure")


def parse_catch_up(value: CatchUpLike) -> admin_service_pb2.CatchUp.ValueType:
    """The enum value for ``value``; ``ValueError`` naming the valid choices otherwise."""
    return _parse_enum(admin_service_pb2.CatchUp, "CATCH_UP_", value, "catch_up")


def concurrency_limits(
    max_running: int = 0, max_per_second: float = 0.0
) -> task_pb2.ConcurrencyLimits:
    """``ConcurrencyLimits``; 0 is no limit. Both are always sent: limits replace, not merge."""
    return task_pb2.ConcurrencyLimits(max_running=max_running, max_per_second=max_per_second)


def create_task_request(
    type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    run_at: dt.datetime | None = None,
    delay: float | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    backoff: Backoff | task_pb2.BackoffPolicy | None = None,
    timeout: float | None = None,
    group: str = "",
    idempotency_key: str = "",
    cache: bool = False,
    cache_max_age: float | None = None,
    labels: Mapping[str, str] | None = None,
    on_failure: OnFailureLike | None = None,
    concurrency_key: str = "",
    key_max_running: int | None = None,
    key_max_per_second: float | None = None,
    now: Callable[[], dt.datetime] = _utcnow,
) -> task_service_pb2.CreateTaskRequest:
    """A ``CreateTaskRequest``; ``delay`` is seconds from ``now()`` and excludes ``run_at``.

    ``key_max_running`` and ``key_max_per_second`` set the limits of ``concurrency_key``
    (which they require). Giving either sends both, the other as 0 (no limit), since the
    key's limits are replaced as a whole; giving neither leaves the key's limits as they are.
    ``cache_max_age`` (seconds) bounds the age of a reused result and requires ``cache``.

    Range checks (priority 0..1000, max_attempts 1..100, …) are left to the scheduler, which
    names the field in its ``INVALID_ARGUMENT``; only what cannot be sent at all is refused.
    """
    if run_at is not None and delay is not None:
        raise ValueError("give run_at or delay, not both")
    has_limits = key_max_running is not None or key_max_per_second is not None
    if has_limits and not concurrency_key:
        raise ValueError("key_max_running and key_max_per_second need a concurrency_key")
    if cache_max_age is not None:
        if not cache:
            raise ValueError("cache_max_age needs cache=True")
        if cache_max_age < 0:
            raise ValueError(f"cache_max_age must be >= 0 seconds, got {cache_max_age}")
    if delay is not None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay}")
        run_at = now() + dt.timedelta(seconds=delay)
    request = task_service_pb2.CreateTaskRequest(
        type=type,
        payload=struct_from_dict(payload),
        priority=priority,
        max_attempts=max_attempts or 0,
        group=group,
        idempotency_key=idempotency_key,
        cache=cache,
        labels=dict(labels or {}),
        concurrency_key=concurrency_key,
    )
    if on_failure is not None:
        request.on_failure = parse_on_failure(on_failure)
    if has_limits:
        request.concurrency_limits.CopyFrom(
            concurrency_limits(key_max_running or 0, key_max_per_second or 0.0)
        )
    if run_at is not None:
        request.run_at.CopyFrom(timestamp_from_datetime(run_at))
    if backoff is not None:
        proto = backoff if isinstance(backoff, task_pb2.BackoffPolicy) else backoff.to_proto()
        request.backoff.CopyFrom(proto)
    if timeout is not None:
        request.timeout.CopyFrom(duration_from_seconds(timeout))
    if cache_max_age is not None:
        request.cache_max_age.CopyFrom(duration_from_seconds(cache_max_age))
    return request


def create_task_requests(
    tasks: Iterable[task_service_pb2.CreateTaskRequest | Mapping[str, Any]],
    now: Callable[[], dt.datetime] = _utcnow,
) -> list[task_service_pb2.CreateTaskRequest]:
    """Requests for a batch: messages as they are, dicts as ``create_task``'s keywords."""
    requests = []
    for index, task in enumerate(tasks):
        if isinstance(task, task_service_pb2.CreateTaskRequest):
            requests.append(task)
            continue
        try:
            requests.append(create_task_request(now=now, **task))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tasks[{index}]: {exc}") from exc
    return requests


def create_schedule_request(
    cron: str,
    template: task_service_pb2.CreateTaskRequest,
    *,
    time_zone: str = "UTC",
    schedule_id: str = "",
    catch_up: CatchUpLike = "latest",
) -> admin_service_pb2.CreateScheduleRequest:
    """A ``CreateScheduleRequest`` whose slots create tasks from ``template`` (a request
    :func:`create_task_request` built; each slot sets its ``run_at``).

    A template with ``run_at`` or ``idempotency_key`` is refused: every slot would ask for
    the same time, or answer the first slot's task again.
    """
    if template.HasField("run_at"):
        raise ValueError("a schedule's template has no run_at: each slot sets its own")
    if template.idempotency_key:
        raise ValueError("a schedule's template has no idempotency_key: it would dedupe slots")
    schedule = admin_service_pb2.Schedule(
        cron=cron, time_zone=time_zone, template=template, catch_up=parse_catch_up(catch_up)
    )
    return admin_service_pb2.CreateScheduleRequest(schedule=schedule, schedule_id=schedule_id)


@dataclass(frozen=True)
class TaskFilter:
    """The filters ``ListTasks``, ``DeleteTasks`` and ``WatchTasks`` share."""

    states: list[task_pb2.TaskState.ValueType]
    types: list[str]
    client: str
    group: str
    labels: dict[str, str]

    @classmethod
    def build(
        cls,
        states: Iterable[StateLike] | None = None,
        types: Iterable[str] | None = None,
        client: str = "",
        group: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> TaskFilter:
        # A lone string would otherwise be read as one filter value per character.
        if isinstance(states, str):
            states = [states]
        if isinstance(types, str):
            types = [types]
        return cls(parse_states(states), list(types or ()), client, group, dict(labels or {}))

    def is_empty(self) -> bool:
        return not (self.states or self.types or self.client or self.group or self.labels)

    def fields(self) -> dict[str, Any]:
        """The filter as keyword arguments of any of the three request messages."""
        return {
            "states": self.states,
            "types": self.types,
            "client": self.client,
            "group": self.group,
            "labels": self.labels,
        }
