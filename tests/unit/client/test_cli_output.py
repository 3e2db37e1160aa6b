"""taskctl output: proto JSON for programs, tables and lines for people, errors on stderr."""

from __future__ import annotations

import io
import json

from rich.console import Console, RenderableType

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from orchestrator_client.cli._output import Output, message_to_dict
from orchestrator_client.cli._tables import (
    event_line,
    stats_view,
    task_detail,
    task_table,
    task_type_line,
    task_type_table,
    when,
    worker_table,
)


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
