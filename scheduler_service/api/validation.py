"""Requests to domain values, refusing anything malformed with the field's name.

Every check raises :class:`InvalidArgument` whose message starts with the field path
(``tasks[2].priority: must be between 0 and 1000, got -1``), so a caller in any language
can tell what to fix. Nothing is written until a whole request has passed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from orchestrator_client.convert import dict_from_struct
from orchestrator_client.protocol import TASK_TYPE_PATTERN

from ..domain.errors import InvalidArgument
from ..domain.ids import is_valid_id
from ..domain.model import (
    MICROS_PER_SECOND,
    Backoff,
    ConcurrencyLimits,
    Micros,
    OnFailure,
    TaskFilter,
    TaskSpec,
    TaskState,
)
from ..domain.schedules import CatchUp, ScheduleSpec, check_cron, zone

TYPE_PATTERN = re.compile(TASK_TYPE_PATTERN)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]*$")
LABEL_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$")
DAY = 86_400 * MICROS_PER_SECOND
_EARLIEST_RUN_AT = 946_684_800 * MICROS_PER_SECOND  # 2000-01-01: older is surely a mistake


@dataclass(frozen=True)
class Limits:
    """Bounds on what a request may ask for (configurable where users need it)."""

    max_payload_bytes: int = 1024 * 1024
    max_schedule_ahead: Micros = 366 * DAY
    default_max_attempts: int = 3
    max_attempts: int = 100
    default_timeout: Micros = 600 * MICROS_PER_SECOND
    max_timeout: Micros = DAY
    min_timeout: Micros = MICROS_PER_SECOND
    max_priority: int = 1000
    max_batch: int = 1000
    max_name_length: int = 128
    max_key_length: int = 256
    max_labels: int = 32
    max_label_value_length: int = 256
    default_page_size: int = 50
    max_page_size: int = 1000
    max_backoff: Micros = 7 * DAY


def require_name(field: str, value: str, limits: Limits) -> str:
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > limits.max_name_length:
        raise InvalidArgument(field, f"must be at most {limits.max_name_length} characters")
    if not NAME_PATTERN.match(value):
        raise InvalidArgument(
            field,
            f"{value!r} must start with a letter or digit and use only letters, digits "
            "and _ . : - /",
        )
    return value


def require_type(field: str, value: str) -> str:
    """A task type name: the same rule workers apply to their handlers."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if not TYPE_PATTERN.fullmatch(value):
        raise InvalidArgument(
            field, f"{value[:64]!r} is not a task type name: a letter, then up to 127 letters, "
            "digits, _ . -"
        )  # fmt: skip
    return value


def require_task_id(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if not is_valid_id(value):
        raise InvalidArgument(field, f"{value[:64]!r} is not a task id (26 characters, base32)")
    return value


def payload_json(field: str, message: struct_pb2.Struct, limits: Limits) -> str:
    """Canonical JSON of a Struct (sorted keys, whole numbers as integers), refusing
    NaN/Infinity and oversize payloads."""
    try:
        text = json.dumps(
            dict_from_struct(message),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except ValueError as exc:
        raise InvalidArgument(field, f"not valid JSON: {exc}") from None
    size = len(text.encode())
    if size > limits.max_payload_bytes:
        raise InvalidArgument(
            field, f"{size} bytes of JSON exceed the limit of {limits.max_payload_bytes}"
        )
    return text


def _timestamp(field: str, message: timestamp_pb2.Timestamp) -> Micros:
    if not 0 <= message.nanos < 1_000_000_000:
        raise InvalidArgument(field, f"nanos must be in [0, 1e9), got {message.nanos}")
    return message.seconds * MICROS_PER_SECOND + message.nanos // 1000


def _duration(field: str, message: duration_pb2.Duration) -> Micros:
    if not -999_999_999 <= message.nanos <= 999_999_999 or (message.seconds * message.nanos < 0):
        raise InvalidArgument(field, "is not a valid duration")
    return message.seconds * MICROS_PER_SECOND + message.nanos // 1000


def _seconds(micros: Micros) -> str:
    return f"{micros / MICROS_PER_SECOND:g}s"


def task_spec(
    request: task_service_pb2.CreateTaskRequest,
    *,
    client: str,
    now: Micros,
    limits: Limits,
    prefix: str = "",
) -> TaskSpec:
    """A validated :class:`TaskSpec` from a CreateTaskRequest (``prefix`` for batches)."""
    f = prefix
    type_name = require_type(f + "type", request.type)
    payload = payload_json(f + "payload", request.payload, limits)

    run_at: Micros | None = None
    if request.HasField("run_at"):
        run_at = _timestamp(f + "run_at", request.run_at)
        if run_at < _EARLIEST_RUN_AT:
            raise InvalidArgument(f + "run_at", "must not be before 2000-01-01")
        if run_at > now + limits.max_schedule_ahead:
            raise InvalidArgument(
                f + "run_at",
                f"must be at most {limits.max_schedule_ahead // DAY} days ahead",
            )

    if not 0 <= request.priority <= limits.max_priority:
        raise InvalidArgument(
            f + "priority", f"must be between 0 and {limits.max_priority}, got {request.priority}"
        )
    max_attempts = request.max_attempts or limits.default_max_attempts
    if not 1 <= max_attempts <= limits.max_attempts:
        raise InvalidArgument(
            f + "max_attempts",
            f"must be between 1 and {limits.max_attempts}, got {request.max_attempts}",
        )
    backoff = _backoff(f + "backoff", request, limits)

    timeout = limits.default_timeout
    if request.HasField("timeout"):
        timeout = _duration(f + "timeout", request.timeout)
        if not limits.min_timeout <= timeout <= limits.max_timeout:
            raise InvalidArgument(
                f + "timeout",
                f"must be between {_seconds(limits.min_timeout)} and "
                f"{_seconds(limits.max_timeout)}, got {_seconds(timeout)}",
            )
    if request.group:
        require_name(f + "group", request.group, limits)
    if len(request.idempotency_key) > limits.max_key_length:
        raise InvalidArgument(
            f + "idempotency_key", f"must be at most {limits.max_key_length} characters"
        )
    labels = labels_map(f + "labels", request.labels, limits)
    if request.on_failure not in _ON_FAILURE:
        raise InvalidArgument(
            f + "on_failure", f"unknown value {request.on_failure}; use ON_FAILURE_BLOCK or "
            "ON_FAILURE_SKIP"
        )  # fmt: skip
    cache_max_age = None
    if request.HasField("cache_max_age"):
        if not request.cache:
            raise InvalidArgument(f + "cache_max_age", "needs cache to be true")
        cache_max_age = _duration(f + "cache_max_age", request.cache_max_age)
        if cache_max_age <= 0:
            raise InvalidArgument(f + "cache_max_age", "must be above 0s")
    if request.cache and request.group:
        raise InvalidArgument(
            f + "cache", "cannot be combined with group: a cached task may finish without "
            "running, a grouped one runs in its turn"
        )  # fmt: skip
    key_limits = None
    if request.concurrency_key:
        require_name(f + "concurrency_key", request.concurrency_key, limits)
    if request.HasField("concurrency_limits"):
        if not request.concurrency_key:
            raise InvalidArgument(f + "concurrency_limits", "needs a concurrency_key to apply to")
        key_limits = concurrency_limits(f + "concurrency_limits", request.concurrency_limits)
    return TaskSpec(
        type=type_name,
        payload_json=payload,
        run_at=run_at,
        priority=request.priority,
        max_attempts=max_attempts,
        backoff=backoff,
        timeout=timeout,
        group=request.group,
        idempotency_key=request.idempotency_key,
        cache=request.cache,
        labels=labels,
        client=client,
        on_failure=_ON_FAILURE[request.on_failure],
        concurrency_key=request.concurrency_key,
        key_limits=key_limits,
        cache_max_age=cache_max_age,
    )


_ON_FAILURE = {
    task_pb2.ON_FAILURE_UNSPECIFIED: OnFailure.BLOCK,
    task_pb2.ON_FAILURE_BLOCK: OnFailure.BLOCK,
    task_pb2.ON_FAILURE_SKIP: OnFailure.SKIP,
}
MAX_LIMIT = 1_000_000


def concurrency_limits(field: str, message: task_pb2.ConcurrencyLimits) -> ConcurrencyLimits:
    """Limits of a type or a key: 0 (no limit) to a million running, or starts per second."""
    if not 0 <= message.max_running <= MAX_LIMIT:
        raise InvalidArgument(
            field + ".max_running", f"must be between 0 and {MAX_LIMIT}, got {message.max_running}"
        )
    rate = message.max_per_second
    if not (math.isfinite(rate) and 0 <= rate <= MAX_LIMIT):
        raise InvalidArgument(
            field + ".max_per_second", f"must be between 0 and {MAX_LIMIT}, got {rate}"
        )
    if 0 < rate < 0.001:
        raise InvalidArgument(field + ".max_per_second", "must be 0 (no limit) or at least 0.001")
    return ConcurrencyLimits(message.max_running, rate)


def _backoff(field: str, request: task_service_pb2.CreateTaskRequest, limits: Limits) -> Backoff:
    default = Backoff()
    if not request.HasField("backoff"):
        return default
    policy: task_pb2.BackoffPolicy = request.backoff
    initial = default.initial
    if policy.HasField("initial"):
        initial = _duration(field + ".initial", policy.initial)
        if not 0 < initial <= limits.max_backoff:
            raise InvalidArgument(
                field + ".initial", f"must be above 0s and at most {_seconds(limits.max_backoff)}"
            )
    maximum = max(default.maximum, initial)
    if policy.HasField("maximum"):
        maximum = _duration(field + ".maximum", policy.maximum)
        if not initial <= maximum <= limits.max_backoff:
            raise InvalidArgument(
                field + ".maximum",
                f"must be between initial ({_seconds(initial)}) and {_seconds(limits.max_backoff)}",
            )
    multiplier = default.multiplier
    if policy.HasField("multiplier"):
        multiplier = policy.multiplier
        if not (math.isfinite(multiplier) and 1.0 <= multiplier <= 10.0):
            raise InvalidArgument(field + ".multiplier", f"must be in [1, 10], got {multiplier}")
    jitter = default.jitter
    if policy.HasField("jitter"):
        jitter = policy.jitter
        if not (math.isfinite(jitter) and 0.0 <= jitter <= 1.0):
            raise InvalidArgument(field + ".jitter", f"must be in [0, 1], got {jitter}")
    return Backoff(initial, multiplier, maximum, jitter)


def labels_map(field: str, labels: Mapping[str, str], limits: Limits) -> dict[str, str]:
    if len(labels) > limits.max_labels:
        raise InvalidArgument(field, f"at most {limits.max_labels} labels, got {len(labels)}")
    for key, value in labels.items():
        if not key or len(key) > 63 or not LABEL_KEY_PATTERN.match(key):
            raise InvalidArgument(
                f"{field}[{key[:64]!r}]",
                "keys are 1 to 63 letters, digits, _ . - / and start with a letter or digit",
            )
        if len(value) > limits.max_label_value_length:
            raise InvalidArgument(
                f"{field}[{key!r}]",
                f"values are at most {limits.max_label_value_length} characters",
            )
    return dict(labels)


def task_filter(
    *,
    states: Iterable[int],
    types: Iterable[str],
    client: str,
    group: str,
    labels: Mapping[str, str],
    limits: Limits,
) -> TaskFilter:
    parsed_states = set()
    for i, value in enumerate(states):
        if value not in TaskState._value2member_map_:
            raise InvalidArgument(
                f"states[{i}]",
                f"unknown state {value}; use one of "
                + ", ".join(f"TASK_STATE_{s.name}" for s in TaskState),
            )
        parsed_states.add(TaskState(value))
    parsed_types = set()
    for i, name in enumerate(types):
        parsed_types.add(require_type(f"types[{i}]", name))
    if len(client) > limits.max_name_length:
        raise InvalidArgument("client", f"must be at most {limits.max_name_length} characters")
    if group:
        require_name("group", group, limits)
    return TaskFilter(
        states=frozenset(parsed_states),
        types=frozenset(parsed_types),
        client=client,
        group=group,
        labels=labels_map("labels", labels, limits),
    )


def page_size(field: str, value: int, default: int, maximum: int) -> int:
    """AIP-158: 0 means the default, above the maximum is lowered to it, negative is refused."""
    if value < 0:
        raise InvalidArgument(field, f"must not be negative, got {value}")
    return min(value or default, maximum)


def view(field: str, value: int, default: int) -> int:
    if value not in task_pb2.TaskView.values():
        raise InvalidArgument(field, f"unknown view {value}; use TASK_VIEW_BASIC or TASK_VIEW_FULL")
    return value or default


_CATCH_UP = {0: CatchUp.LATEST, 1: CatchUp.LATEST, 2: CatchUp.SKIP, 3: CatchUp.ALL}


def schedule_spec(
    request: admin_service_pb2.CreateScheduleRequest,
    *,
    schedule_id: str,
    client: str,
    now: Micros,
    limits: Limits,
) -> ScheduleSpec:
    """A validated CreateSchedule; the template is validated like a CreateTask."""
    if not request.HasField("schedule"):
        raise InvalidArgument("schedule", "is required")
    schedule = request.schedule
    if request.schedule_id:
        require_name("schedule_id", request.schedule_id, limits)
    try:
        check_cron(schedule.cron)
    except ValueError as exc:
        raise InvalidArgument("schedule.cron", str(exc)) from None
    time_zone = schedule.time_zone or "UTC"
    try:
        zone(time_zone)
    except ValueError as exc:
        raise InvalidArgument("schedule.time_zone", str(exc)) from None
    if not schedule.HasField("template"):
        raise InvalidArgument("schedule.template", "is required: the task each slot creates")
    if schedule.template.HasField("run_at"):
        raise InvalidArgument("schedule.template.run_at", "is set by each slot; leave it out")
    if schedule.template.idempotency_key:
        raise InvalidArgument(
            "schedule.template.idempotency_key", "is set by each slot; leave it out"
        )
    template = task_spec(
        schedule.template, client=client, now=now, limits=limits, prefix="schedule.template."
    )
    if schedule.catch_up not in _CATCH_UP:
        raise InvalidArgument(
            "schedule.catch_up", f"unknown value {schedule.catch_up}; use CATCH_UP_LATEST, "
            "CATCH_UP_SKIP or CATCH_UP_ALL"
        )  # fmt: skip
    return ScheduleSpec(
        id=schedule_id,
        cron=" ".join(schedule.cron.split()),
        time_zone=time_zone,
        template=template,
        catch_up=_CATCH_UP[schedule.catch_up],
        client=client,
    )
