"""taskctl output: proto JSON for programs, tables and lines for people, errors on stderr."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console, RenderableType

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from orchestrator_client.cli._output import Output, message_to_dict
from orchestrator_client.cli._tables import (
    after,
    attempt_table,
    event_line,
    explain_view,
    limits_text,
    percent_text,
    progress_bar,
    progress_text,
    schedule_detail,
    schedule_line,
    schedule_table,
    seconds_text,
    stats_view,
    task_detail,
    task_table,
    task_type_limits_line,
    task_type_line,
    task_type_table,
    when,
    worker_table,
)
from orchestrator_client.convert import duration_from_micros, timestamp_from_micros

T0 = 1_800_000_000_000_000  # 2027-01-15 08:00:00Z in microseconds


def sample_task() -> task_pb2.Task:
    task = task_pb2.Task(
        id="t1",
        type="sum2",
        state=task_pb2.TASK_STATE_FAILED,
        priority=3,
        max_attempts=3,
        attempts=2,
        group="g",
        client="ops",
        labels={"team": "billing"},
        error="boom [x]",
        revision=12,
    )
    task.payload.update({"first": 1, "second": 2})
    task.created_at.FromSeconds(1_800_000_000)
    task.timeout.FromSeconds(90)
    task.backoff.multiplier = 2.0
    task.backoff.jitter = 0.0
    task.attempt_history.add(
        number=1, worker_id="w1", lease_id="l1", outcome=task_pb2.ATTEMPT_OUTCOME_TIMED_OUT
    )
    return task


def render(renderable: RenderableType) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined, no-any-return]


def output(json_mode: bool) -> tuple[Output, io.StringIO, io.StringIO]:
    stdout, stderr = io.StringIO(), io.StringIO()
    return Output(json_mode=json_mode, stdout=stdout, stderr=stderr), stdout, stderr


def test_json_uses_proto_field_names_and_prints_defaults() -> None:
    document = message_to_dict(sample_task())
    assert document["max_attempts"] == 3
    assert document["attempt_history"][0]["worker_id"] == "w1"
    assert document["state"] == "TASK_STATE_FAILED"
    assert document["revision"] == "12"  # int64 as a string, as the JSON mapping says
    assert document["timeout"] == "90s"
    assert document["created_at"] == "2027-01-15T08:00:00Z"
    assert document["payload"] == {"first": 1, "second": 2}
    assert document["idempotency_key"] == ""  # defaults printed: a stable shape for scripts
    assert "run_at" not in document  # unset messages stay absent
    assert message_to_dict(task_service_pb2.ListTasksResponse()) == {
        "tasks": [],
        "next_page_token": "",
        "revision": "0",
    }


def test_show_in_json_mode_writes_indented_json() -> None:
    out, stdout, stderr = output(json_mode=True)
    out.show(sample_task(), task_detail)
    assert json.loads(stdout.getvalue())["id"] == "t1"
    assert stdout.getvalue().startswith("{\n  ")
    assert stderr.getvalue() == ""


def test_events_in_json_mode_are_one_line_each() -> None:
    out, stdout, _ = output(json_mode=True)
    event = task_service_pb2.TaskEvent(
        type=task_service_pb2.TASK_EVENT_TYPE_UPSERTED, task=sample_task(), revision=12
    )
    out.show_event(event, event_line)
    out.show_event(event, event_line)
    lines = stdout.getvalue().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["type"] == "TASK_EVENT_TYPE_UPSERTED"


def test_show_for_people_renders_the_table() -> None:
    out, stdout, _ = output(json_mode=False)
    out.show(sample_task(), task_detail)
    assert "FAILED" in stdout.getvalue()
    assert "{" not in stdout.getvalue().splitlines()[0]


def test_say_is_silent_in_json_mode() -> None:
    out, stdout, _ = output(json_mode=True)
    out.say("deleted t1")
    assert stdout.getvalue() == ""
    out, stdout, _ = output(json_mode=False)
    out.say("deleted [t1]")
    assert stdout.getvalue() == "deleted [t1]\n"


def test_errors_and_notes_go_to_stderr_on_one_line() -> None:
    out, stdout, stderr = output(json_mode=True)
    long_details = "x" * 300 + " [not markup]"
    out.error(f"NOT_FOUND: {long_details}")
    out.note("more tasks: add --page-token abc")
    assert stdout.getvalue() == ""
    lines = stderr.getvalue().splitlines()
    assert lines == [f"error: NOT_FOUND: {long_details}", "more tasks: add --page-token abc"]


def test_task_detail_shows_set_fields_and_attempts() -> None:
    text = render(task_detail(sample_task()))
    for expected in (
        "t1",
        "sum2",
        "FAILED",
        "2/3",
        "team=billing",
        "1m30s",
        "x2, jitter 0",
        "boom [x]",
        '{"first":1,"second":2}',
        "2027-01-15 08:00:00Z",
        "timed out",
        "w1",
    ):
        assert expected in text, expected
    assert "idempotency key" not in text  # unset fields are left out
    assert "run at" not in text


def test_task_table() -> None:
    second = task_pb2.Task(id="t2", type="foo", state=task_pb2.TASK_STATE_SUCCEEDED)
    text = render(task_table([sample_task(), second]))
    lines = [line for line in text.splitlines() if "t1" in line or "t2" in line]
    assert len(lines) == 2
    assert "FAILED" in lines[0] and "SUCCEEDED" in lines[1]
    assert render(task_table([])).strip() == "no tasks"


def test_event_lines() -> None:
    task = sample_task()
    task.updated_at.FromSeconds(1_800_000_000)
    task.worker_id = "w1"
    upserted = task_service_pb2.TaskEvent(type=task_service_pb2.TASK_EVENT_TYPE_UPSERTED, task=task)
    assert event_line(upserted).plain == "08:00:00Z t1 FAILED attempt 2/3 on w1 error: boom [x]"
    deleted = task_service_pb2.TaskEvent(
        type=task_service_pb2.TASK_EVENT_TYPE_DELETED, task=task_pb2.Task(id="t1")
    )
    assert event_line(deleted).plain == "- t1 DELETED"


def test_admin_views() -> None:
    paused = admin_service_pb2.TaskType(
        name="foo",
        state=admin_service_pb2.TASK_TYPE_STATE_PAUSED,
        counts=admin_service_pb2.TaskCounts(pending=4),
        connected_workers=2,
    )
    assert "PAUSED" in render(task_type_table([paused]))
    assert task_type_line(paused).plain == "foo PAUSED"
    assert render(task_type_table([])).strip() == "no task types"
    worker = admin_service_pb2.Worker(id="w1", task_types=["foo", "bar"], draining=True)
    assert "w1 (draining)" in render(worker_table([worker]))
    assert render(worker_table([])).strip() == "no workers connected"
    stats = admin_service_pb2.GetStatsResponse(
        totals=admin_service_pb2.TaskCounts(failed=1), throughput_per_second=0.5
    )
    text = render(stats_view(stats))
    assert "0.50/s" in text and "all" in text and "most retried" not in text


def test_when_is_empty_for_unset_times() -> None:
    assert when(task_pb2.Task().created_at) == ""


def test_empty_optional_columns_are_left_out() -> None:
    quiet = task_pb2.Task(id="t2", type="foo", state=task_pb2.TASK_STATE_PENDING)
    header = render(task_table([quiet])).splitlines()[1]
    assert "group" not in header and "error" not in header
    header = render(task_table([quiet, sample_task()])).splitlines()[1]
    assert "group" in header and "error" in header


def test_ids_are_never_cut_on_a_narrow_terminal() -> None:
    task = task_pb2.Task(id="01M8HYWG920DFWNSB571P03VPF", type="foo", error="e " * 40)
    console = Console(file=io.StringIO(), width=70, color_system=None)
    console.print(task_table([task]))
    assert task.id in console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.0004, "0.4ms"),
        (0.0123, "12.3ms"),
        (0.34, "340ms"),
        (0.9996, "1s"),
        (1.21, "1.21s"),
        (65, "1m5s"),
        (-0.002, "-2ms"),
        (-3, "-3s"),
    ],
)
def test_seconds_text_keeps_small_and_negative_spans(seconds: float, text: str) -> None:
    assert seconds_text(seconds) == text


def test_after_is_an_offset_or_empty() -> None:
    due = timestamp_from_micros(T0)
    assert after(timestamp_from_micros(T0 + 15_300), due) == "+15.3ms"
    assert after(timestamp_from_micros(T0), due) == "+0ms"
    assert after(timestamp_from_micros(T0 - 2_000), due) == "-2ms"  # a worker's clock behind
    assert after(task_pb2.Attempt().started_at, due) == ""


def timed_attempt(
    number: int, due: int, leased: int, started: int, finished: int
) -> task_pb2.Attempt:
    return task_pb2.Attempt(
        number=number,
        worker_id="w1",
        lease_id=f"l{number}",
        due_at=timestamp_from_micros(due),
        leased_at=timestamp_from_micros(leased),
        started_at=timestamp_from_micros(started),
        finished_at=timestamp_from_micros(finished),
        outcome=task_pb2.ATTEMPT_OUTCOME_SUCCEEDED,
    )


def test_attempt_times_are_offsets_from_due() -> None:
    attempt = timed_attempt(1, T0, T0 + 3_000, T0 + 15_300, T0 + 2_100_000)
    lines = render(attempt_table([attempt])).splitlines()
    assert "time after due" in lines[0]
    header = next(line for line in lines if "outcome" in line)
    for column in ("due", "leased", "started", "finished"):
        assert column in header, column
    row = next(line for line in lines if "l1" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == [
        "1",
        "w1",
        "l1",
        "2027-01-15 08:00:00Z",
        "+3ms",
        "+15.3ms",
        "+2.1s",
        "succeeded",
    ]


def test_attempts_without_due_times_show_absolute_times() -> None:
    # Attempts recorded before due/leased times existed: no empty columns, no offsets.
    old = task_pb2.Attempt(number=1, worker_id="w1", started_at=timestamp_from_micros(T0))
    text = render(attempt_table([old]))
    assert "2027-01-15 08:00:00Z" in text
    assert "time after due" not in text
    header = next(line for line in text.splitlines() if "outcome" in line)
    assert "due" not in header and "leased" not in header


def test_task_detail_shows_lateness_on_failure_and_key() -> None:
    task = sample_task()
    task.on_failure = task_pb2.ON_FAILURE_SKIP
    task.concurrency_key = "acme"
    task.lateness.CopyFrom(duration_from_micros(15_300))
    task.attempt_history.append(timed_attempt(2, T0, T0 + 1_000, T0 + 2_000, T0 + 63_000_000))
    text = render(task_detail(task))
    assert "on failure       skip" in text
    assert "concurrency key  acme" in text
    assert "lateness         15.3ms" in text
    assert "+1m3s" in text and "+2ms" in text


def test_task_detail_leaves_out_unset_new_fields_but_shows_zero_lateness() -> None:
    text = render(task_detail(sample_task()))
    assert "on failure" not in text and "concurrency key" not in text and "lateness" not in text
    punctual = task_pb2.Task(id="t1", lateness=duration_from_micros(0))
    assert "lateness  0ms" in render(task_detail(punctual))


def explanation() -> task_service_pb2.ExplainTaskResponse:
    response = task_service_pb2.ExplainTaskResponse(
        task_id="t7",
        state=task_pb2.TASK_STATE_PENDING,
        summary="It waits for task t3 of its group.",
        tasks_ahead=4,
    )
    response.reasons.add(
        code=task_service_pb2.REASON_CODE_GROUP_BLOCKED,
        message='group "g" runs one task at a time; it is waiting for task t3',
        blocking_task_id="t3",
    )
    response.reasons.add(
        code=task_service_pb2.REASON_CODE_RATE_LIMIT,
        message="type foo starts at most 2 tasks a second [type limit]",
        until=timestamp_from_micros(T0 + 1_000_000),
    )
    response.reasons.add(
        code=task_service_pb2.REASON_CODE_CONCURRENCY_LIMIT,
        message="key acme runs at most 1 task at once",
        blocking_task_id="t5",
    )
    return response


def test_explain_view() -> None:
    lines = [line.rstrip() for line in render(explain_view(explanation())).splitlines()]
    assert lines == [
        "task     t7",
        "state    PENDING",
        "summary  It waits for task t3 of its group.",
        '- group "g" runs one task at a time; it is waiting for task t3',
        "- type foo starts at most 2 tasks a second [type limit] (until 2027-01-15 08:00:01Z)",
        "- key acme runs at most 1 task at once (waiting for t5)",
        "tasks ahead: 4",
    ]


def test_explain_without_reasons_and_as_json() -> None:
    quiet = task_service_pb2.ExplainTaskResponse(
        task_id="t1", state=task_pb2.TASK_STATE_RUNNING, summary="It is running."
    )
    assert render(explain_view(quiet)).splitlines()[-1] == "tasks ahead: 0"
    document = message_to_dict(explanation())
    assert document["tasks_ahead"] == "4"  # int64
    assert document["reasons"][0]["code"] == "REASON_CODE_GROUP_BLOCKED"
    assert document["reasons"][1]["until"] == "2027-01-15T08:00:01Z"
    assert document["reasons"][0]["blocking_task_id"] == "t3"


def test_task_types_show_limits_or_a_dash() -> None:
    limited = admin_service_pb2.TaskType(
        name="foo", limits=task_pb2.ConcurrencyLimits(max_running=5, max_per_second=0.5)
    )
    rate_only = admin_service_pb2.TaskType(
        name="bar", limits=task_pb2.ConcurrencyLimits(max_per_second=20)
    )
    free = admin_service_pb2.TaskType(name="baz")
    lines = render(task_type_table([limited, rate_only, free])).splitlines()
    header = next(line for line in lines if "type" in line)
    assert "max running" in header and "max/s" in header

    def cells(name: str) -> list[str]:
        row = next(line for line in lines if f" {name} " in line)
        return [cell.strip() for cell in row.split("│")[1:-1]][2:4]

    assert cells("foo") == ["5", "0.5"]
    assert cells("bar") == ["-", "20"]
    assert cells("baz") == ["-", "-"]


def test_limits_line() -> None:
    assert limits_text(task_pb2.ConcurrencyLimits()) == "none"
    assert limits_text(task_pb2.ConcurrencyLimits(max_running=5)) == "max running 5"
    limited = admin_service_pb2.TaskType(
        name="foo", limits=task_pb2.ConcurrencyLimits(max_running=5, max_per_second=0.1)
    )
    assert task_type_limits_line(limited).plain == "foo limits: max running 5, max 0.1/s"


def test_stats_show_lateness() -> None:
    stats = admin_service_pb2.GetStatsResponse(
        lateness_p50=duration_from_micros(12_345),
        lateness_p99=duration_from_micros(340_000),
        lateness_max=duration_from_micros(1_210_000),
        lateness_samples=1000,
    )
    text = render(stats_view(stats))
    assert "lateness              p50 12.3ms, p99 340ms, max 1.21s (1000 starts)" in text
    empty = render(stats_view(admin_service_pb2.GetStatsResponse()))
    assert "no starts measured yet" in empty


def test_progress_text_bar_and_percent() -> None:
    assert progress_text(task_pb2.Progress()) == ""
    assert progress_text(task_pb2.Progress(message="warming up")) == "warming up"
    half = task_pb2.Progress(percent=42.54, message="copying part 3")
    assert progress_text(half) == "42.5% copying part 3"
    assert progress_text(half, bar=True) == "█████████░░░░░░░░░░░ 42.5% copying part 3"
    assert progress_text(task_pb2.Progress(percent=0)) == "0%"  # set, though zero
    assert percent_text(100.0) == "100%"
    assert progress_bar(150.0, width=4) == "████"
    assert progress_bar(-3.0, width=4) == "░░░░"


def test_get_and_watch_show_progress_and_the_cached_source() -> None:
    task = sample_task()
    task.state = task_pb2.TASK_STATE_RUNNING
    task.error = ""
    task.progress.percent = 50
    task.progress.message = "half way"
    task.progress.details.update({"rows": 10})
    task.cached = True
    task.cached_from = "t0"
    text = render(task_detail(task))
    assert "██████████░░░░░░░░░░ 50% half way" in text
    assert '{"rows":10}' in text
    assert "cached from t0" in text
    event = task_service_pb2.TaskEvent(type=task_service_pb2.TASK_EVENT_TYPE_UPSERTED, task=task)
    assert event_line(event).plain.endswith("RUNNING attempt 2/3 50% half way cached from t0")
    plain = sample_task()
    assert "progress" not in render(task_detail(plain))
    assert "cached" not in render(task_detail(plain))
    plain.cached = True
    assert re.search(r"^cached +yes", render(task_detail(plain)), re.MULTILINE)


def sample_schedule() -> admin_service_pb2.Schedule:
    schedule = admin_service_pb2.Schedule(
        id="nightly",
        cron="0 3 * * *",
        time_zone="Europe/Berlin",
        state=admin_service_pb2.SCHEDULE_STATE_ACTIVE,
        catch_up=admin_service_pb2.CATCH_UP_ALL,
        last_task_id="t7",
        fired_count=12,
    )
    schedule.template.type = "report"
    schedule.template.payload.update({"n": 1})
    schedule.template.priority = 5
    schedule.template.cache = True
    schedule.template.cache_max_age.FromSeconds(600)
    schedule.next_fire_at.FromSeconds(1_800_000_000)
    schedule.last_fire_at.FromSeconds(1_799_913_600)
    return schedule


def test_schedule_views() -> None:
    schedule = sample_schedule()
    table = render(schedule_table([schedule]))
    header = table.splitlines()[1]
    for column in ("id", "cron", "tz", "type", "state", "next fire", "last fire", "fired"):
        assert column in header, column
    assert "last task" in table
    row = next(line for line in table.splitlines() if "nightly" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == [
        "nightly",
        "0 3 * * *",
        "Europe/Berlin",
        "report",
        "ACTIVE",
        "2027-01-15 08:00:00Z",
        "2027-01-14 08:00:00Z",
        "12",
        "t7",
    ]
    assert render(schedule_table([])).strip() == "no schedules"

    detail = render(schedule_detail(schedule))
    for expected in (
        "catch up +all",
        'payload +{"n":1}',
        "priority +5",
        "cache +yes, results up to 10m old",
        "time zone +Europe/Berlin",
        "last task +t7",
    ):
        assert re.search(f"^{expected}", detail, re.MULTILINE), expected
    assert "group" not in detail

    assert schedule_line(schedule).plain == "nightly ACTIVE, next fire 2027-01-15 08:00:00Z"
    schedule.state = admin_service_pb2.SCHEDULE_STATE_PAUSED
    assert schedule_line(schedule).plain == "nightly PAUSED"
