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
from typing import Any, TypeAlias

from orchestrator.v1 import task_pb2, task_service_pb2

from ._states import StateLike, parse_states
from .convert import duration_from_seconds, struct_from_dict, timestamp_from_datetime


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


_ON_FAILURE_PREFIX = "ON_FAILURE_"

#: What a task's group does if the task ends FAILED: ``"block"`` (the default) or ``"skip"``,
#: in any case, or an ``OnFailure`` value.
OnFailureLike: TypeAlias = task_pb2.OnFailure.ValueType | str


def parse_on_failure(value: OnFailureLike) -> task_pb2.OnFailure.ValueType:
    """The enum value for ``value``; ``ValueError`` naming the valid choices otherwise.

    ``UNSPECIFIED`` is accepted as a value (it means BLOCK), but not by name: someone who
    types a name means one of the two behaviours.
    """
    if isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith(_ON_FAILURE_PREFIX):
            name = _ON_FAILURE_PREFIX + name
        if name != "ON_FAILURE_UNSPECIFIED":
            with contextlib.suppress(ValueError):
                return task_pb2.OnFailure.Value(name)
    elif value in task_pb2.OnFailure.values():
        return value
    raise ValueError(f"unknown on_failure {value!r}; expected 'block' or 'skip'")


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

    Range checks (priority 0..1000, max_attempts 1..100, …) are left to the scheduler, which
    names the field in its ``INVALID_ARGUMENT``; only what cannot be sent at all is refused.
    """
    if run_at is not None and delay is not None:
        raise ValueError("give run_at or delay, not both")
    has_limits = key_max_running is not None or key_max_per_second is not None
    if has_limits and not concurrency_key:
        raise ValueError("key_max_running and key_max_per_second need a concurrency_key")
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
