"""``taskctl`` end to end against the scripted server: output, exit statuses, filters."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from typing import TYPE_CHECKING

import grpc
import pytest

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from orchestrator_client.cli import ExitCode, main
from orchestrator_client.convert import duration_from_micros, timestamp_from_micros
from orchestrator_client.protocol import CLIENT_METADATA_KEY

if TYPE_CHECKING:
    from conftest import FakeScheduler, Taskctl


async def test_create_prints_the_task_as_proto_json(
    taskctl: Taskctl, scheduler: FakeScheduler
) -> None:
    result = await taskctl(
        "--client-id",
        "ops",
        "create",
        "sum2",
        "--payload",
        '{"first": 1}',
        "-p",
        "second=2",
        "-p",
        "name=ada",
        "--in",
        "5m",
        "--timeout",
        "30s",
        "--priority",
        "9",
        "--label",
        "team=billing",
        "--group",
        "g1",
    )
    assert result.code == ExitCode.OK, result.err
    task = result.json()
    assert task["type"] == "sum2"
    assert task["payload"] == {"first": 1, "second": 2, "name": "ada"}
    assert task["state"] == "TASK_STATE_PENDING"
    assert task["client"] == "ops"
    assert task["timeout"] == "30s"
    assert task["labels"] == {"team": "billing"}
    assert "run_at" in task and "max_attempts" in task  # snake_case, as in the proto
    call = scheduler.script.calls_of("CreateTask")[0]
    assert call.metadata[CLIENT_METADATA_KEY] == "ops"
    assert call.request.priority == 9
    assert call.request.group == "g1"


async def test_client_id_and_scheduler_from_the_environment(
    scheduler: FakeScheduler, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"ORCHESTRATOR_SCHEDULER": scheduler.target, "ORCHESTRATOR_CLIENT_ID": "env-id"}
    code = await asyncio.to_thread(main, ["create", "foo"], environ=environ)
    assert code == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["client"] == "env-id"


@pytest.mark.parametrize(
    ("final", "status"),
    [
        (task_pb2.TASK_STATE_SUCCEEDED, ExitCode.OK),
        (task_pb2.TASK_STATE_FAILED, ExitCode.TASK_UNSUCCESSFUL),
        (task_pb2.TASK_STATE_CANCELLED, ExitCode.TASK_UNSUCCESSFUL),
    ],
)
async def test_create_wait_exits_by_the_final_state(
    taskctl: Taskctl, scheduler: FakeScheduler, final: task_pb2.TaskState.ValueType, status: int
) -> None:
    # The fake numbers tasks t1, t2, …: script the watch of the task about to be created.
    scheduler.script.watch_states["t1"] = [task_pb2.TASK_STATE_RUNNING, final]
    result = await taskctl("create", "foo", "--wait")
    assert result.code == status, result.err
    assert result.json()["state"] == task_pb2.TaskState.Name(final)


async def test_create_wait_timeout(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    scheduler.script.hold_watch.add("t1")
    result = await taskctl("create", "foo", "--wait", "--wait-timeout", "200ms")
    assert result.code == ExitCode.RPC_ERROR
    assert "error: DEADLINE_EXCEEDED: task t1 did not end within 200ms" in result.err


async def test_get_shows_the_task(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_RUNNING)
    task.attempt_history.add(number=1, worker_id="w1", lease_id="l1")
    result = await taskctl("get", task.id)
    assert result.code == ExitCode.OK
    assert result.json()["attempt_history"][0]["worker_id"] == "w1"

    table = await taskctl("--no-json", "get", task.id)
    assert table.code == ExitCode.OK
    assert "RUNNING" in table.out
    assert "attempts" in table.out and "w1" in table.out


async def test_not_found_is_exit_3_with_the_status_on_stderr(taskctl: Taskctl) -> None:
    result = await taskctl("get", "nope")
    assert result.code == ExitCode.RPC_ERROR
    assert result.out == ""
    assert result.err.strip() == "error: NOT_FOUND: task 'nope' not found"


async def test_unreachable_scheduler_is_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{sock.getsockname()[1]}"
    code = await asyncio.to_thread(main, ["--scheduler", target, "stats"], environ={})
    assert code == ExitCode.UNREACHABLE
    assert capsys.readouterr().err.startswith("error: UNAVAILABLE: ")


async def test_list_filters_and_limits(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    for state in ("failed", "pending", "failed", "cancelled", "failed"):
        scheduler.script.add_task(
            type="foo", state=task_pb2.TaskState.Value(f"TASK_STATE_{state.upper()}")
        )
    result = await taskctl("list", "--state", "failed,cancelled", "--limit", "3")
    assert result.code == ExitCode.OK
    listing = result.json()
    assert [t["id"] for t in listing["tasks"]] == ["t5", "t4", "t3"]
    assert listing["next_page_token"]
    request = scheduler.script.calls_of("ListTasks")[0].request
    assert list(request.states) == [task_pb2.TASK_STATE_FAILED, task_pb2.TASK_STATE_CANCELLED]
    assert request.page_size == 3

    token = listing["next_page_token"]
    rest = await taskctl("list", "--state", "failed,cancelled", "--page-token", token)
    assert [t["id"] for t in rest.json()["tasks"]] == ["t1"]
    assert rest.json()["next_page_token"] == ""


async def test_list_all_follows_every_page(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    for _ in range(4):
        scheduler.script.add_task(type="foo")
    result = await taskctl("list", "--all", "--oldest-first")
    assert [t["id"] for t in result.json()["tasks"]] == ["t1", "t2", "t3", "t4"]
    assert scheduler.script.calls_of("ListTasks")[0].request.order_by == "created_at asc"


async def test_list_as_a_table(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_FAILED, error="boom")
    result = await taskctl("--no-json", "list")
    assert result.code == ExitCode.OK
    assert "t1" in result.out and "FAILED" in result.out and "boom" in result.out
    assert "no tasks" in (await taskctl("--no-json", "list", "--type", "nope")).out
    assert (await taskctl("list", "--type", "nope")).json()["tasks"] == []


async def test_delete(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo")
    result = await taskctl("delete", task.id)
    assert (result.code, result.json()) == (ExitCode.OK, {})  # google.protobuf.Empty
    assert scheduler.script.tasks == {}
    assert (await taskctl("delete", task.id)).code == ExitCode.RPC_ERROR


async def test_delete_all_needs_a_filter_or_all_yes(
    taskctl: Taskctl, scheduler: FakeScheduler
) -> None:
    scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_FAILED)
    scheduler.script.add_task(type="bar")
    refused = await taskctl("delete-all")
    assert refused.code == ExitCode.USAGE
    assert "give a filter" in refused.err
    assert (await taskctl("delete-all", "--all")).code == ExitCode.USAGE
    assert (await taskctl("delete-all", "--all", "--type", "foo", "--yes")).code == ExitCode.USAGE
    # Not at a terminal (stdin is captured): no question can be asked, so --yes is needed.
    no_yes = await taskctl("delete-all", "--state", "failed")
    assert no_yes.code == ExitCode.USAGE
    assert "--yes" in no_yes.err
    assert scheduler.script.calls_of("DeleteTasks") == []

    filtered = await taskctl("delete-all", "--state", "failed", "--yes")
    assert filtered.json() == {"deleted_count": "1"}
    everything = await taskctl("delete-all", "--all", "--yes")
    assert everything.json() == {"deleted_count": "1"}
    assert scheduler.script.calls_of("DeleteTasks")[-1].request.confirm_all


async def test_cancel_and_retry(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    refused = await taskctl("retry", task.id)
    assert refused.code == ExitCode.RPC_ERROR
    assert refused.err.startswith("error: FAILED_PRECONDITION: ")
    assert (await taskctl("cancel", task.id)).json()["state"] == "TASK_STATE_CANCELLED"
    assert (await taskctl("retry", task.id)).json()["state"] == "TASK_STATE_PENDING"


async def test_watch_prints_one_json_line_per_change(
    taskctl: Taskctl, scheduler: FakeScheduler
) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    scheduler.script.watch_states[task.id] = [
        task_pb2.TASK_STATE_RUNNING,
        task_pb2.TASK_STATE_FAILED,
    ]
    result = await taskctl("watch", task.id)
    assert result.code == ExitCode.TASK_UNSUCCESSFUL
    events = [json.loads(line) for line in result.out.splitlines()]
    assert [e["task"]["state"] for e in events] == [
        "TASK_STATE_PENDING",
        "TASK_STATE_RUNNING",
        "TASK_STATE_FAILED",
    ]
    assert all(e["type"] == "TASK_EVENT_TYPE_UPSERTED" for e in events)


async def test_watch_as_lines_for_people(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    scheduler.script.watch_states[task.id] = [task_pb2.TASK_STATE_SUCCEEDED]
    result = await taskctl("--no-json", "watch", task.id)
    assert result.code == ExitCode.OK
    lines = result.out.splitlines()
    assert len(lines) == 2
    assert "PENDING" in lines[0] and "SUCCEEDED" in lines[1]


async def test_types_pause_resume(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    types = await taskctl("types")
    assert [t["name"] for t in types.json()["task_types"]] == ["foo", "bar"]
    assert len(scheduler.script.calls_of("ListTaskTypes")) == 2  # pages of one
    assert (await taskctl("pause", "foo")).json()["state"] == "TASK_TYPE_STATE_PAUSED"
    table = await taskctl("--no-json", "types")
    assert "PAUSED" in table.out
    assert (await taskctl("--no-json", "resume", "foo")).out.strip() == "foo ACTIVE"
    unknown = await taskctl("pause", "nope")
    assert unknown.code == ExitCode.RPC_ERROR


async def test_workers_and_stats(taskctl: Taskctl) -> None:
    workers = await taskctl("workers")
    assert workers.json()["workers"][0]["hostname"] == "host"
    assert "w1" in (await taskctl("--no-json", "workers")).out
    stats = await taskctl("stats")
    assert stats.json()["totals"]["succeeded"] == "5"  # int64 is a string in proto JSON
    table = await taskctl("--no-json", "stats")
    assert "over retry limit" in table.out and "t9" in table.out


async def test_scheduler_errors_are_exit_3_for_every_code(
    taskctl: Taskctl, scheduler: FakeScheduler
) -> None:
    scheduler.script.failures["CreateTask"] = [grpc.StatusCode.INVALID_ARGUMENT]
    result = await taskctl("create", "nope")
    assert result.code == ExitCode.RPC_ERROR
    assert result.err.startswith("error: INVALID_ARGUMENT: scripted INVALID_ARGUMENT")


async def test_create_sends_group_and_concurrency_flags(
    taskctl: Taskctl, scheduler: FakeScheduler
) -> None:
    result = await taskctl(
        "create",
        "fetch",
        "--group",
        "invoice-42",
        "--on-failure",
        "skip",
        "--concurrency-key",
        "acme",
        "--key-max-running",
        "2",
        "--key-max-per-second",
        "0.5",
    )
    assert result.code == ExitCode.OK, result.err
    task = result.json()
    assert (task["on_failure"], task["concurrency_key"]) == ("ON_FAILURE_SKIP", "acme")
    request = scheduler.script.calls_of("CreateTask")[0].request
    assert request.on_failure == task_pb2.ON_FAILURE_SKIP
    assert request.concurrency_key == "acme"
    assert request.concurrency_limits == task_pb2.ConcurrencyLimits(
        max_running=2, max_per_second=0.5
    )

    table = await taskctl("--no-json", "create", "fetch", "--concurrency-key", "acme")
    assert re.search(r"^concurrency key +acme", table.out, re.MULTILINE)
    plain = scheduler.script.calls_of("CreateTask")[1].request
    assert plain.on_failure == task_pb2.ON_FAILURE_UNSPECIFIED
    assert not plain.HasField("concurrency_limits")  # the key's limits are left alone


async def test_key_limits_without_a_key_send_nothing(
    taskctl: Taskctl, scheduler: FakeScheduler
) -> None:
    result = await taskctl("create", "fetch", "--key-max-per-second", "1")
    assert result.code == ExitCode.USAGE
    assert "need --concurrency-key" in result.err
    assert scheduler.script.calls == []


async def test_explain(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    explanation = task_service_pb2.ExplainTaskResponse(
        task_id=task.id,
        state=task.state,
        summary="It waits for task t0 of its group.",
        tasks_ahead=3,
    )
    explanation.reasons.add(
        code=task_service_pb2.REASON_CODE_GROUP_BLOCKED,
        message='group "g" runs one task at a time; it is waiting for task t0',
        blocking_task_id="t0",
    )
    explanation.reasons.add(
        code=task_service_pb2.REASON_CODE_BACKING_OFF,
        message="attempt 1 failed; it backs off",
        until=timestamp_from_micros(1_800_000_030_000_000),
    )
    scheduler.script.explanations[task.id] = explanation

    result = await taskctl("explain", task.id)
    assert result.code == ExitCode.OK, result.err
    document = result.json()
    assert document["summary"] == "It waits for task t0 of its group."
    assert [r["code"] for r in document["reasons"]] == [
        "REASON_CODE_GROUP_BLOCKED",
        "REASON_CODE_BACKING_OFF",
    ]
    assert document["tasks_ahead"] == "3"
    assert scheduler.script.calls_of("ExplainTask")[0].request.id == task.id

    table = await taskctl("--no-json", "explain", task.id)
    assert table.code == ExitCode.OK
    lines = [line.rstrip() for line in table.out.splitlines()]
    assert lines == [
        f"task     {task.id}",
        "state    PENDING",
        "summary  It waits for task t0 of its group.",
        '- group "g" runs one task at a time; it is waiting for task t0',
        "- attempt 1 failed; it backs off (until 2027-01-15 08:00:30Z)",
        "tasks ahead: 3",
    ]
    missing = await taskctl("explain", "nope")
    assert missing.code == ExitCode.RPC_ERROR
    assert missing.err.startswith("error: NOT_FOUND: ")


async def test_limits_sets_keeps_and_clears(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    both = await taskctl("limits", "foo", "--max-running", "5", "--max-per-second", "2")
    assert both.code == ExitCode.OK, both.err
    assert both.json()["limits"] == {"max_running": 5, "max_per_second": 2}
    # Both flags given: no need to read the current limits first.
    assert scheduler.script.calls_of("ListTaskTypes") == []

    # One flag: the other limit keeps its current value (read from the type listing).
    rate = await taskctl("--no-json", "limits", "foo", "--max-per-second", "0.5")
    assert rate.out.strip() == "foo limits: max running 5, max 0.5/s"
    assert scheduler.script.calls_of("ListTaskTypes")
    cleared = await taskctl("--no-json", "limits", "foo", "--max-running", "0")
    assert cleared.out.strip() == "foo limits: max 0.5/s"
    none = await taskctl("--no-json", "limits", "foo", "--max-per-second", "0")
    assert none.out.strip() == "foo limits: none"
    sent = [call.request.limits for call in scheduler.script.calls_of("SetTaskTypeLimits")]
    assert sent == [
        task_pb2.ConcurrencyLimits(max_running=5, max_per_second=2),
        task_pb2.ConcurrencyLimits(max_running=5, max_per_second=0.5),
        task_pb2.ConcurrencyLimits(max_per_second=0.5),
        task_pb2.ConcurrencyLimits(),
    ]

    refused = await taskctl("limits", "foo")
    assert refused.code == ExitCode.USAGE
    assert len(scheduler.script.calls_of("SetTaskTypeLimits")) == 4
    unknown = await taskctl("limits", "nope", "--max-running", "1")
    assert unknown.code == ExitCode.RPC_ERROR
    assert unknown.err.startswith("error: NOT_FOUND: ")


async def test_types_show_the_limits(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    scheduler.script.task_types["foo"].limits.CopyFrom(
        task_pb2.ConcurrencyLimits(max_running=5, max_per_second=0.5)
    )
    table = await taskctl("--no-json", "types")
    lines = table.out.splitlines()
    assert "max running" in lines[1] and "max/s" in lines[1]

    def cells(name: str) -> list[str]:
        row = next(line for line in lines if f" {name} " in line)
        return [cell.strip() for cell in row.split("│")[1:-1]]

    assert cells("foo")[2:4] == ["5", "0.5"]
    assert cells("bar")[2:4] == ["-", "-"]
    document = (await taskctl("types")).json()
    assert document["task_types"][0]["limits"] == {"max_running": 5, "max_per_second": 0.5}


async def test_stats_show_lateness(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    scheduler.script.lateness = ((12_300, 340_000, 1_210_000), 1000)
    table = await taskctl("--no-json", "stats")
    assert "p50 12.3ms, p99 340ms, max 1.21s (1000 starts)" in table.out
    document = (await taskctl("stats")).json()
    assert document["lateness_p50"] == "0.012300s"
    assert document["lateness_samples"] == 1000


async def test_get_shows_lateness_and_attempt_times(
    taskctl: Taskctl, scheduler: FakeScheduler
) -> None:
    due = 1_800_000_000_000_000
    task = scheduler.script.add_task(
        type="foo", state=task_pb2.TASK_STATE_SUCCEEDED, lateness=duration_from_micros(15_300)
    )
    task.attempt_history.add(
        number=1,
        worker_id="w1",
        lease_id="l1",
        due_at=timestamp_from_micros(due),
        leased_at=timestamp_from_micros(due + 3_000),
        started_at=timestamp_from_micros(due + 15_300),
        finished_at=timestamp_from_micros(due + 2_100_000),
        outcome=task_pb2.ATTEMPT_OUTCOME_SUCCEEDED,
    )
    table = await taskctl("--no-json", "get", task.id)
    assert table.code == ExitCode.OK
    assert re.search(r"^lateness +15\.3ms", table.out, re.MULTILINE)
    row = next(line for line in table.out.splitlines() if " l1 " in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[3:7] == ["2027-01-15 08:00:00Z", "+3ms", "+15.3ms", "+2.1s"]
    attempt = (await taskctl("get", task.id)).json()["attempt_history"][0]
    assert attempt["due_at"] == "2027-01-15T08:00:00Z"
    assert attempt["leased_at"] == "2027-01-15T08:00:00.003Z"


async def test_run_makes_a_scheduled_task_due(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_SCHEDULED)
    result = await taskctl("run", task.id)
    assert result.code == ExitCode.OK, result.err
    assert result.json()["state"] == "TASK_STATE_PENDING"
    assert scheduler.script.calls_of("RunTask")[0].request.id == task.id
    again = await taskctl("run", task.id)  # already due: answered as it is
    assert (again.code, again.json()["state"]) == (ExitCode.OK, "TASK_STATE_PENDING")
    done = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_SUCCEEDED)
    refused = await taskctl("run", done.id)
    assert refused.code == ExitCode.RPC_ERROR
    assert refused.err.startswith("error: FAILED_PRECONDITION: ")


async def test_create_with_cache_max_age(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    result = await taskctl("create", "foo", "--cache", "--cache-max-age", "10m")
    assert result.code == ExitCode.OK, result.err
    request = scheduler.script.calls_of("CreateTask")[0].request
    assert request.cache and request.cache_max_age.seconds == 600
    plain = await taskctl("create", "foo", "--cache")
    assert plain.code == ExitCode.OK
    assert not scheduler.script.calls_of("CreateTask")[1].request.HasField("cache_max_age")


async def test_get_and_watch_show_progress_and_cached_from(
    taskctl: Taskctl, scheduler: FakeScheduler
) -> None:
    task = scheduler.script.add_task(
        type="foo", state=task_pb2.TASK_STATE_RUNNING, cache=True, cached=True, cached_from="t0"
    )
    task.progress.percent = 25
    task.progress.message = "step 1 of 4"
    table = await taskctl("--no-json", "get", task.id)
    assert re.search(r"^progress +█████░{15} 25% step 1 of 4", table.out, re.MULTILINE)
    assert re.search(r"^cached +cached from t0", table.out, re.MULTILINE)
    document = (await taskctl("get", task.id)).json()
    assert document["progress"]["percent"] == 25
    assert document["cached_from"] == "t0"

    scheduler.script.watch_states[task.id] = [task_pb2.TASK_STATE_SUCCEEDED]
    lines = (await taskctl("--no-json", "watch", task.id)).out.splitlines()
    assert lines[0].endswith(f"{task.id} RUNNING attempt 0 25% step 1 of 4 cached from t0")
    assert "SUCCEEDED" in lines[1]


async def test_schedule_commands(taskctl: Taskctl, scheduler: FakeScheduler) -> None:
    created = await taskctl(
        "schedule",
        "create",
        "*/5 * * * *",
        "report",
        "-p",
        "n=1",
        "--payload",
        '{"title": "daily"}',
        "--tz",
        "Europe/Berlin",
        "--id",
        "nightly",
        "--catch-up",
        "all",
        "--priority",
        "3",
        "--timeout",
        "30s",
        "--label",
        "team=x",
    )
    assert created.code == ExitCode.OK, created.err
    document = created.json()
    assert (document["id"], document["state"], document["catch_up"]) == (
        "nightly",
        "SCHEDULE_STATE_ACTIVE",
        "CATCH_UP_ALL",
    )
    request = scheduler.script.calls_of("CreateSchedule")[0].request
    assert request.schedule_id == "nightly"
    assert (request.schedule.cron, request.schedule.time_zone) == ("*/5 * * * *", "Europe/Berlin")
    template = request.schedule.template
    assert template.type == "report"
    assert dict(template.payload) == {"n": 1, "title": "daily"}
    assert (template.priority, template.timeout.seconds, dict(template.labels)) == (
        3,
        30,
        {"team": "x"},
    )
    assert not template.HasField("run_at") and template.idempotency_key == ""

    taken = await taskctl("schedule", "create", "0 3 * * *", "report", "--id", "nightly")
    assert taken.code == ExitCode.RPC_ERROR
    assert taken.err.startswith("error: ALREADY_EXISTS: ")
    bad = await taskctl("schedule", "create", "every day", "report")
    assert bad.code == ExitCode.RPC_ERROR
    assert "schedule.cron" in bad.err
    other = await taskctl("schedule", "create", "0 3 * * *", "report")
    assert other.json()["time_zone"] == "UTC"
    assert scheduler.script.calls_of("CreateSchedule")[-1].request.schedule.catch_up == (
        admin_service_pb2.CATCH_UP_LATEST
    )

    listing = await taskctl("schedule", "list")
    assert [s["id"] for s in listing.json()["schedules"]] == ["nightly", other.json()["id"]]
    table = await taskctl("--no-json", "schedule", "list")
    assert "nightly" in table.out and "Europe/Berlin" in table.out and "ACTIVE" in table.out

    paused = await taskctl("--no-json", "schedule", "pause", "nightly")
    assert paused.out.strip() == "nightly PAUSED"
    assert (await taskctl("schedule", "get", "nightly")).json()["state"] == "SCHEDULE_STATE_PAUSED"
    resumed = await taskctl("--no-json", "schedule", "resume", "nightly")
    assert resumed.out.startswith("nightly ACTIVE, next fire ")
    detail = await taskctl("--no-json", "schedule", "get", "nightly")
    assert re.search(r"^catch up +all", detail.out, re.MULTILINE)
    assert re.search(r"^type +report", detail.out, re.MULTILINE)

    deleted = await taskctl("--no-json", "schedule", "delete", "nightly")
    assert deleted.out.strip() == "deleted schedule nightly"
    missing = await taskctl("schedule", "get", "nightly")
    assert missing.code == ExitCode.RPC_ERROR
    assert missing.err.startswith("error: NOT_FOUND: ")
    assert "no schedules" not in (await taskctl("--no-json", "schedule", "list")).out
