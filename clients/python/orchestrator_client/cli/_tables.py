"""How responses look to people: rich tables and one-line events.

Pure functions from protobuf messages to rich renderables, so tests render them into a
string console and read the text.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2

from .._states import state_name
from ..convert import (
    MICROS,
    dict_from_struct,
    dumps_json,
    micros_from_timestamp,
    seconds_from_duration,
)
from ._values import format_duration

STATE_STYLES = {
    "SCHEDULED": "cyan",
    "PENDING": "yellow",
    "RUNNING": "blue",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "magenta",
}

Cell = str | Text


def make_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    whole: Container[str] = (),
    right: Container[str] = (),
    optional: Container[str] = (),
    title: str | None = None,
) -> Table:
    """A table of literal text.

    Plain strings become ``Text``: task errors and payloads may hold ``[brackets]`` that rich
    would otherwise read as markup and swallow. Columns named in ``whole`` (the ids people
    copy) never shrink below their longest cell; the others fold when the terminal is narrow,
    rather than being cut with an ellipsis. Keep ``whole`` short: if the whole columns alone
    are wider than the terminal, rich crops the table. Columns named in ``optional`` are left
    out when they are empty in every row, which saves room on a narrow terminal.
    """
    cells = [[Text(cell) if isinstance(cell, str) else cell for cell in row] for row in rows]
    widths = [max((row[i].cell_len for row in cells), default=0) for i in range(len(columns))]
    kept = [i for i, name in enumerate(columns) if widths[i] or name not in optional]
    table = Table(title=title, title_justify="left")
    for index in kept:
        name = columns[index]
        table.add_column(
            name,
            justify="right" if name in right else "left",
            overflow="fold",
            min_width=max(widths[index], len(name)) if name in whole else None,
        )
    for row in cells:
        table.add_row(*(row[index] for index in kept))
    return table


def _grid(rows: Iterable[tuple[str, Cell]]) -> Table:
    """``label  value`` lines, labels in bold; rows with an empty value are left out."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        if value:
            grid.add_row(label, Text(value) if isinstance(value, str) else value)
    return grid


def when(stamp: timestamp_pb2.Timestamp) -> str:
    """``2026-11-28 20:35:28Z``, or empty for an unset time."""
    if not (stamp.seconds or stamp.nanos):
        return ""
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ")


def how_long(duration: duration_pb2.Duration) -> str:
    """``1m30s``, or empty for an unset duration."""
    if not (duration.seconds or duration.nanos):
        return ""
    return format_duration(seconds_from_duration(duration))


def seconds_text(seconds: float) -> str:
    """A span that may be small, zero or negative, as lateness is: ``12.3ms``, ``0ms``,
    ``-2ms``, ``1m5s``; below a second with three significant digits."""
    sign = "-" if seconds < 0 else ""
    magnitude = abs(seconds)
    if magnitude < 0.9995:
        return f"{sign}{magnitude * 1000:.3g}ms"
    return sign + format_duration(magnitude)


def signed_duration(duration: duration_pb2.Duration) -> str:
    """:func:`seconds_text` of a ``Duration`` (``0ms`` when unset: check presence first)."""
    return seconds_text(seconds_from_duration(duration))


def _is_set(stamp: timestamp_pb2.Timestamp) -> bool:
    return bool(stamp.seconds or stamp.nanos)


def after(stamp: timestamp_pb2.Timestamp, origin: timestamp_pb2.Timestamp) -> str:
    """``+12.3ms``: how long after ``origin`` ``stamp`` was; empty when ``stamp`` is unset."""
    if not _is_set(stamp):
        return ""
    delta = (micros_from_timestamp(stamp) - micros_from_timestamp(origin)) / MICROS
    return ("+" if delta >= 0 else "") + seconds_text(delta)


def state_text(state: task_pb2.TaskState.ValueType) -> Text:
    name = state_name(state)
    return Text(name, style=STATE_STYLES.get(name, ""))


def _json(value: struct_pb2.Struct) -> str:
    return dumps_json(dict_from_struct(value)) if value.fields else ""


def _labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _outcome(outcome: task_pb2.AttemptOutcome.ValueType) -> str:
    if outcome == task_pb2.ATTEMPT_OUTCOME_UNSPECIFIED:
        return "running"
    name: str = task_pb2.AttemptOutcome.Name(outcome)
    return name.removeprefix("ATTEMPT_OUTCOME_").lower().replace("_", " ")


def _backoff(policy: task_pb2.BackoffPolicy) -> str:
    parts = []
    if policy.HasField("initial"):
        parts.append(f"initial {how_long(policy.initial)}")
    if policy.HasField("multiplier"):
        parts.append(f"x{policy.multiplier:g}")
    if policy.HasField("maximum"):
        parts.append(f"max {how_long(policy.maximum)}")
    if policy.HasField("jitter"):
        parts.append(f"jitter {policy.jitter:g}")
    return ", ".join(parts)


def _on_failure(value: task_pb2.OnFailure.ValueType) -> str:
    """``skip``; empty when unspecified (the scheduler's default, BLOCK)."""
    if value == task_pb2.ON_FAILURE_UNSPECIFIED:
        return ""
    try:
        name: str = task_pb2.OnFailure.Name(value)
    except ValueError:
        return str(int(value))
    return name.removeprefix("ON_FAILURE_").lower()


def _cached(task: task_pb2.Task) -> str:
    """``cached from t41``; ``yes`` when the scheduler named no task; empty when not cached."""
    if task.cached_from:
        return f"cached from {task.cached_from}"
    return "yes" if task.cached else ""


PROGRESS_BAR_WIDTH = 20


def percent_text(percent: float) -> str:
    """``42%``, ``42.5%``, ``100%``: one decimal at most."""
    return f"{round(percent, 1):g}%"


def progress_bar(percent: float, width: int = PROGRESS_BAR_WIDTH) -> str:
    """``██████░░░░``: ``percent`` of ``width`` cells filled (clamped to 0..100)."""
    filled = round(min(max(percent, 0.0), 100.0) / 100 * width)
    return "█" * filled + "░" * (width - filled)


def progress_text(progress: task_pb2.Progress, *, bar: bool = False) -> str:
    """``42% copying part 3`` (with ``bar``, the bar first); empty when nothing was
    reported. The handler may report a message without a percent, or the other way round."""
    parts = []
    if progress.HasField("percent"):
        if bar:
            parts.append(progress_bar(progress.percent))
        parts.append(percent_text(progress.percent))
    if progress.message:
        parts.append(progress.message)
    return " ".join(parts)


def _attempts(task: task_pb2.Task) -> str:
    return f"{task.attempts}/{task.max_attempts}" if task.max_attempts else str(task.attempts)


def task_detail(task: task_pb2.Task) -> RenderableType:
    """Every set field of one task, then its attempt history."""
    grid = _grid(
        [
            ("id", task.id),
            ("type", task.type),
            ("state", state_text(task.state)),
            ("priority", str(task.priority)),
            ("attempts", _attempts(task)),
            ("run at", when(task.run_at)),
            ("due at", when(task.due_at)),
            ("group", task.group),
            ("on failure", _on_failure(task.on_failure)),
            ("concurrency key", task.concurrency_key),
            ("client", task.client),
            ("labels", _labels(task.labels)),
            ("idempotency key", task.idempotency_key),
            ("cache", "yes" if task.cache else ""),
            ("cached", _cached(task)),
            ("timeout", how_long(task.timeout)),
            ("backoff", _backoff(task.backoff)),
            ("created", when(task.created_at)),
            ("updated", when(task.updated_at)),
            ("started", when(task.started_at)),
            ("lateness", signed_duration(task.lateness) if task.HasField("lateness") else ""),
            ("finished", when(task.finished_at)),
            ("worker", task.worker_id),
            ("lease", task.lease_id),
            ("progress", progress_text(task.progress, bar=True)),
            ("progress details", _json(task.progress.details)),
            ("error", task.error),
            ("payload", _json(task.payload)),
            ("result", _json(task.result)),
        ]
    )
    if not task.attempt_history:
        return grid
    return Group(grid, Text(""), attempt_table(task.attempt_history))


def _attempt_times(attempt: task_pb2.Attempt) -> tuple[str, str, str, str]:
    """Due, leased, started, finished: the last three as offsets from due when it is known,
    so that the delays read at a glance (``+3ms``, ``+15ms``, ``+2.1s``)."""
    if not _is_set(attempt.due_at):
        return "", when(attempt.leased_at), when(attempt.started_at), when(attempt.finished_at)
    due = attempt.due_at
    return (
        when(due),
        after(attempt.leased_at, due),
        after(attempt.started_at, due),
        after(attempt.finished_at, due),
    )


def attempt_table(attempts: Sequence[task_pb2.Attempt]) -> Table:
    """The attempt history, one row per attempt, oldest first."""
    relative = any(_is_set(attempt.due_at) for attempt in attempts)
    return make_table(
        ("#", "worker", "lease", "due", "leased", "started", "finished", "outcome", "error"),
        [
            (
                str(attempt.number),
                attempt.worker_id,
                attempt.lease_id,
                *_attempt_times(attempt),
                _outcome(attempt.outcome),
                attempt.error,
            )
            for attempt in attempts
        ],
        right=("#", "leased", "started", "finished") if relative else ("#",),
        optional=("due", "leased", "error"),
        title="attempts (leased, started, finished: time after due)" if relative else "attempts",
    )


def task_table(tasks: Iterable[task_pb2.Task]) -> RenderableType:
    """One row per task, in the order the scheduler answered (newest first by default)."""
    rows = [
        (
            task.id,
            task.type,
            state_text(task.state),
            str(task.priority),
            _attempts(task),
            task.group,
            when(task.created_at),
            task.error,
        )
        for task in tasks
    ]
    if not rows:
        return Text("no tasks")
    return make_table(
        ("id", "type", "state", "prio", "attempts", "group", "created", "error"),
        rows,
        whole=("id", "created"),
        right=("prio", "attempts"),
        optional=("group", "error"),
    )


def event_line(event: task_service_pb2.TaskEvent) -> Text:
    """``20:35:28Z 0192… RUNNING attempt 1/3 on worker-1``: one line per change."""
    task = event.task
    stamp = when(task.updated_at)[11:] or "-"
    line = Text(f"{stamp} {task.id} ")
    if event.type == task_service_pb2.TASK_EVENT_TYPE_DELETED:
        line.append("DELETED", style="dim")
        return line
    line.append_text(state_text(task.state))
    line.append(f" attempt {_attempts(task)}")
    if task.worker_id:
        line.append(f" on {task.worker_id}")
    progress = progress_text(task.progress)
    if progress:
        line.append(f" {progress}", style="cyan")
    if task.cached_from:
        line.append(f" cached from {task.cached_from}")
    if task.error:
        line.append(f" error: {task.error}", style="red")
    return line


def _type_state(state: admin_service_pb2.TaskTypeState.ValueType) -> Text:
    name: str = admin_service_pb2.TaskTypeState.Name(state).removeprefix("TASK_TYPE_STATE_")
    return Text(name, style="yellow" if name == "PAUSED" else "")


_COUNT_FIELDS = ("scheduled", "pending", "running", "succeeded", "failed", "cancelled")


def _counts(counts: admin_service_pb2.TaskCounts) -> list[str]:
    return [str(getattr(counts, field)) for field in _COUNT_FIELDS]


def _max_running(limits: task_pb2.ConcurrencyLimits) -> str:
    return str(limits.max_running) if limits.max_running else "-"


def _max_per_second(limits: task_pb2.ConcurrencyLimits) -> str:
    return f"{limits.max_per_second:g}" if limits.max_per_second else "-"


def limits_text(limits: task_pb2.ConcurrencyLimits) -> str:
    """``max running 5, max 2/s``, or ``none``."""
    parts = []
    if limits.max_running:
        parts.append(f"max running {limits.max_running}")
    if limits.max_per_second:
        parts.append(f"max {limits.max_per_second:g}/s")
    return ", ".join(parts) or "none"


def task_type_table(types: Iterable[admin_service_pb2.TaskType]) -> RenderableType:
    rows: list[list[Cell]] = [
        [
            task_type.name,
            _type_state(task_type.state),
            _max_running(task_type.limits),
            _max_per_second(task_type.limits),
            str(task_type.connected_workers),
            *_counts(task_type.counts),
        ]
        for task_type in types
    ]
    if not rows:
        return Text("no task types")
    limited = ("max running", "max/s")
    counted = ("workers", *_COUNT_FIELDS)
    return make_table(
        ("type", "state", *limited, *counted),
        rows,
        whole=("type",),
        right=(*limited, *counted),
    )


def task_type_line(task_type: admin_service_pb2.TaskType) -> Text:
    """After pause/resume: ``foo PAUSED``."""
    return Text(f"{task_type.name} ").append_text(_type_state(task_type.state))


def task_type_limits_line(task_type: admin_service_pb2.TaskType) -> Text:
    """After limits: ``foo limits: max running 5, max 2/s``."""
    return Text(f"{task_type.name} limits: {limits_text(task_type.limits)}")


def _reason_line(reason: task_service_pb2.Reason) -> Text:
    """``- <message> (until 2026-11-28 20:35:28Z)``; the blocking task is named if the
    message does not name it already."""
    details = []
    if reason.blocking_task_id and reason.blocking_task_id not in reason.message:
        details.append(f"waiting for {reason.blocking_task_id}")
    if _is_set(reason.until):
        details.append(f"until {when(reason.until)}")
    suffix = f" ({', '.join(details)})" if details else ""
    return Text(f"- {reason.message}{suffix}")


def explain_view(explanation: task_service_pb2.ExplainTaskResponse) -> RenderableType:
    """The task's state and summary, one ``- reason`` line each, then the tasks ahead."""
    grid = _grid(
        [
            ("task", explanation.task_id),
            ("state", state_text(explanation.state)),
            ("summary", explanation.summary),
        ]
    )
    reasons = [_reason_line(reason) for reason in explanation.reasons]
    return Group(grid, *reasons, Text(f"tasks ahead: {explanation.tasks_ahead}"))


def worker_table(workers: Iterable[admin_service_pb2.Worker]) -> RenderableType:
    rows = [
        (
            worker.id + (" (draining)" if worker.draining else ""),
            worker.hostname,
            str(worker.pid),
            ", ".join(worker.task_types),
            str(worker.slots),
            str(worker.in_flight),
            when(worker.last_heartbeat_at),
            worker.scheduler_id,
        )
        for worker in workers
    ]
    if not rows:
        return Text("no workers connected")
    return make_table(
        ("id", "host", "pid", "types", "slots", "in flight", "heartbeat", "scheduler"),
        rows,
        whole=("id",),
        right=("pid", "slots", "in flight"),
    )


def _lateness(stats: admin_service_pb2.GetStatsResponse) -> str:
    """``p50 12ms, p99 340ms, max 1.2s (1000 starts)``: start minus due time."""
    if not stats.lateness_samples:
        return "no starts measured yet"
    return (
        f"p50 {signed_duration(stats.lateness_p50)}, p99 {signed_duration(stats.lateness_p99)}, "
        f"max {signed_duration(stats.lateness_max)} ({stats.lateness_samples} starts)"
    )


def stats_view(stats: admin_service_pb2.GetStatsResponse) -> RenderableType:
    """The summary, counts per type and state with a total row, the most retried tasks."""
    summary = _grid(
        [
            ("connected workers", str(stats.connected_workers)),
            ("retries", str(stats.retries)),
            ("over retry limit", str(stats.over_retry_limit)),
            ("finished last minute", str(stats.finished_last_minute)),
            ("throughput", f"{stats.throughput_per_second:.2f}/s"),
            ("lateness", _lateness(stats)),
        ]
    )
    counts = make_table(
        ("type", *_COUNT_FIELDS),
        [[by_type.type, *_counts(by_type.counts)] for by_type in stats.by_type],
        whole=("type",),
        right=_COUNT_FIELDS,
    )
    counts.add_section()
    counts.add_row(Text("all", style="bold"), *_counts(stats.totals))
    parts: list[RenderableType] = [summary, Text(""), counts]
    if stats.most_retried:
        retried = make_table(
            ("task", "type", "attempts"),
            [
                (entry.task_id, entry.type, f"{entry.attempts}/{entry.max_attempts}")
                for entry in stats.most_retried
            ],
            whole=("task",),
            title="most retried",
        )
        parts += [Text(""), retried]
    return Group(*parts)


def _schedule_state(state: admin_service_pb2.ScheduleState.ValueType) -> Text:
    try:
        name: str = admin_service_pb2.ScheduleState.Name(state)
    except ValueError:
        name = f"STATE_{int(state)}"
    name = name.removeprefix("SCHEDULE_STATE_")
    return Text(name, style="yellow" if name == "PAUSED" else "")


def _catch_up(value: admin_service_pb2.CatchUp.ValueType) -> str:
    """``latest``, ``skip`` or ``all`` (unspecified is latest, the scheduler's default)."""
    if value == admin_service_pb2.CATCH_UP_UNSPECIFIED:
        return "latest"
    try:
        name: str = admin_service_pb2.CatchUp.Name(value)
    except ValueError:
        return str(int(value))
    return name.removeprefix("CATCH_UP_").lower()


def schedule_table(schedules: Iterable[admin_service_pb2.Schedule]) -> RenderableType:
    """One row per schedule, as the scheduler listed them."""
    rows: list[list[Cell]] = [
        [
            schedule.id,
            schedule.cron,
            schedule.time_zone,
            schedule.template.type,
            _schedule_state(schedule.state),
            when(schedule.next_fire_at),
            when(schedule.last_fire_at),
            str(schedule.fired_count),
            schedule.last_task_id,
        ]
        for schedule in schedules
    ]
    if not rows:
        return Text("no schedules")
    return make_table(
        ("id", "cron", "tz", "type", "state", "next fire", "last fire", "fired", "last task"),
        rows,
        whole=("id",),
        right=("fired",),
    )


def schedule_detail(schedule: admin_service_pb2.Schedule) -> RenderableType:
    """The schedule, then the template its tasks are made from (set fields only)."""
    template = schedule.template
    return _grid(
        [
            ("id", schedule.id),
            ("cron", schedule.cron),
            ("time zone", schedule.time_zone),
            ("state", _schedule_state(schedule.state)),
            ("catch up", _catch_up(schedule.catch_up)),
            ("next fire", when(schedule.next_fire_at)),
            ("last fire", when(schedule.last_fire_at)),
            ("fired", str(schedule.fired_count)),
            ("last task", schedule.last_task_id),
            ("created", when(schedule.created_at)),
            ("type", template.type),
            ("payload", _json(template.payload)),
            ("priority", str(template.priority) if template.priority else ""),
            ("max attempts", str(template.max_attempts) if template.max_attempts else ""),
            ("timeout", how_long(template.timeout)),
            ("backoff", _backoff(template.backoff)),
            ("group", template.group),
            ("on failure", _on_failure(template.on_failure)),
            ("concurrency key", template.concurrency_key),
            ("labels", _labels(template.labels)),
            ("cache", _cache_text(template)),
        ]
    )


def _cache_text(template: task_service_pb2.CreateTaskRequest) -> str:
    if not template.cache:
        return ""
    if template.HasField("cache_max_age"):
        return f"yes, results up to {how_long(template.cache_max_age)} old"
    return "yes"


def schedule_line(schedule: admin_service_pb2.Schedule) -> Text:
    """After pause/resume: ``nightly PAUSED`` or ``nightly ACTIVE, next fire …``."""
    line = Text(f"{schedule.id} ").append_text(_schedule_state(schedule.state))
    if schedule.state == admin_service_pb2.SCHEDULE_STATE_ACTIVE and _is_set(schedule.next_fire_at):
        line.append(f", next fire {when(schedule.next_fire_at)}")
    return line
