"""Every ``taskctl`` command as a real subprocess, against real scheduler and worker processes.

``taskctl --json`` prints the contract's JSON mapping (proto field names, enums by name, int64
as strings, fields at their defaults included); ``watch`` prints one event per line. The exit
status is part of the interface: 0 done, 1 the task ended FAILED/CANCELLED, 2 usage error,
3 the scheduler answered an error, 4 the scheduler is unreachable.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.commands import BackgroundCommand, CommandResult, parse_time, run_command
from tests.support.polling import eventually
from tests.support.tasks import wait_terminal

TERMINAL = {"TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED"}
OK, TASK_UNSUCCESSFUL, USAGE, RPC_ERROR, UNREACHABLE = 0, 1, 2, 3, 4


def taskctl_command() -> list[str]:
    """``python -m orchestrator_client.cli`` (the same ``main`` as the console script), or
    the ``taskctl`` script installed next to the interpreter."""
    if importlib.util.find_spec("orchestrator_client.cli.__main__") is not None:
        return [sys.executable, "-m", "orchestrator_client.cli"]
    script = Path(sys.executable).parent / "taskctl"
    if not script.exists():
        pytest.fail(f"neither orchestrator_client.cli.__main__ nor {script} exists")
    return [str(script)]


class Taskctl:
    def __init__(self, scheduler: str) -> None:
        self.scheduler = scheduler

    def args(self, *args: str, client_id: str = "") -> list[str]:
        options = ["--scheduler", self.scheduler, "--json", "--timeout", "10s"]
        if client_id:
            options += ["--client-id", client_id]
        return [*taskctl_command(), *options, *args]

    async def __call__(self, *args: str, client_id: str = "") -> CommandResult:
        return await run_command(self.args(*args, client_id=client_id), within=60)

    async def ok(self, *args: str, client_id: str = "") -> Any:
        """The JSON answer of a command that must succeed."""
        return (await self(*args, client_id=client_id)).json()

    async def background(self, *args: str) -> BackgroundCommand:
        return await BackgroundCommand.start(self.args(*args))


def ids(tasks: list[dict[str, Any]]) -> list[str]:
    return [task["id"] for task in tasks]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections to it are refused, and
    nobody else can take it while the test runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_create_wait_get_list_and_watch(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    worker = await cluster.start_worker()
    taskctl = Taskctl(scheduler.grpc_address)
    stub = cluster.tasks()

    # A task due in 3 s, watched in the background while the other commands run.
    later = await taskctl.ok("create", "foo", "--in", "3s", "--label", "suite=cli")
    assert later["state"] == "TASK_STATE_SCHEDULED"
    delay = parse_time(later["run_at"]) - parse_time(later["created_at"])
    assert 2.0 < delay.total_seconds() <= 3.1, delay
    async with await taskctl.background("watch", later["id"]) as watch:
        created = await taskctl.ok(
            "create", "sum2", "-p", "first=1", "-p", "second=2",
            "--label", "team=billing", "--label", "tier=gold", "--priority", "7",
        )  # fmt: skip
        assert created["type"] == "sum2"
        assert created["payload"] == {"first": 1, "second": 2}  # -p values are JSON when they parse
        assert created["labels"] == {"team": "billing", "tier": "gold"}
        assert created["priority"] == 7
        assert created["client"] == ""
        assert created["state"] in {"TASK_STATE_PENDING", "TASK_STATE_RUNNING"}

        waited = await taskctl(
            "create", "sum2", "-p", "first=20", "-p", "second=22", "--wait", client_id="ops"
        )
        assert waited.returncode == OK, waited
        final = waited.json()
        assert final["state"] == "TASK_STATE_SUCCEEDED"
        assert final["result"] == {"sum": 42}
        assert final["client"] == "ops"

        failing = await taskctl(
            "create", "cpu_process", "-p", "fail=true", "-p", "iterations=10",
            "--max-attempts", "1", "--wait",
        )  # fmt: skip
        assert failing.returncode == TASK_UNSUCCESSFUL, failing
        failed = failing.json_values()[-1]
        assert failed["state"] == "TASK_STATE_FAILED"
        assert failed["attempts"] == 1 and failed["max_attempts"] == 1
        assert "fails on purpose" in failed["error"]

        got = await taskctl.ok("get", final["id"])
        assert got["id"] == final["id"] and got["result"] == {"sum": 42}
        (attempt,) = got["attempt_history"]
        assert attempt["number"] == 1
        assert attempt["worker_id"] == worker.name
        assert attempt["outcome"] == "ATTEMPT_OUTCOME_SUCCEEDED"
        assert attempt["lease_id"]
        assert parse_time(attempt["finished_at"]) >= parse_time(attempt["started_at"])

        assert (await wait_terminal(stub, created["id"])).state == task_pb2.TASK_STATE_SUCCEEDED
        sums = {created["id"], final["id"]}
        listed = await taskctl.ok("list", "--state", "succeeded", "--type", "sum2")
        assert set(ids(listed["tasks"])) == sums
        assert all(t["state"] == "TASK_STATE_SUCCEEDED" for t in listed["tasks"])
        assert ids(listed["tasks"]) == sorted(sums, reverse=True)  # newest first
        assert int(listed["revision"]) > 0
        only_failed = await taskctl.ok("list", "--state", "failed")
        assert ids(only_failed["tasks"]) == [failed["id"]]
        both = await taskctl.ok(
            "list", "--state", "succeeded,failed", "--type", "sum2", "--type", "cpu_process"
        )
        assert set(ids(both["tasks"])) == {*sums, failed["id"]}
        assert ids((await taskctl.ok("list", "--label", "team=billing"))["tasks"]) == [
            created["id"]
        ]
        assert ids((await taskctl.ok("list", "--client", "ops"))["tasks"]) == [final["id"]]
        first_page = await taskctl.ok("list", "--type", "sum2", "--limit", "1")
        assert len(first_page["tasks"]) == 1 and first_page["next_page_token"]
        second_page = await taskctl.ok(
            "list", "--type", "sum2", "--page-token", first_page["next_page_token"]
        )
        assert ids(first_page["tasks"]) + ids(second_page["tasks"]) == sorted(sums, reverse=True)
        assert second_page["next_page_token"] == ""

        result = await watch.finish(within=30)
        assert result.returncode == OK, result  # the task SUCCEEDED; watch ends by itself
        events = result.json_values()
        assert all(e["task"]["id"] == later["id"] for e in events)
        states = [e["task"]["state"] for e in events]
        assert states[0] == "TASK_STATE_SCHEDULED", states
        assert states[-1] == "TASK_STATE_SUCCEEDED", states
        assert not TERMINAL & set(states[:-1]), states
        assert [int(e["revision"]) for e in events] == sorted({int(e["revision"]) for e in events})
        started = parse_time(events[-1]["task"]["attempt_history"][0]["started_at"])
        assert started >= parse_time(later["run_at"])  # not before its time


async def test_cancel_retry_delete_and_delete_all(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker()
    taskctl = Taskctl(scheduler.grpc_address)
    stub = cluster.tasks()

    long = await taskctl.ok("create", "foo", "-p", "seconds=60")

    async def running() -> bool:
        task = await stub.GetTask(task_service_pb2.GetTaskRequest(id=long["id"]))
        return task.state == task_pb2.TASK_STATE_RUNNING

    await eventually(running, message="the foo task running")
    cancelled = await taskctl.ok("cancel", long["id"])
    assert cancelled["state"] == "TASK_STATE_CANCELLED"
    history = (await taskctl.ok("get", long["id"]))["attempt_history"]
    assert [a["outcome"] for a in history] == ["ATTEMPT_OUTCOME_CANCELLED"]
    twice = await taskctl("cancel", long["id"])
    assert twice.returncode == RPC_ERROR and "FAILED_PRECONDITION" in twice.stderr, twice

    retried = await taskctl.ok("retry", long["id"])
    assert retried["state"] == "TASK_STATE_PENDING"
    assert retried["attempts"] == 0
    await eventually(running, message="the retried task running again")
    async with await taskctl.background("watch", long["id"]) as watch:
        await eventually(watch.json_so_far, message="the watch's first event")
        deleted = await taskctl("delete", long["id"])
        assert deleted.returncode == OK, deleted
        assert deleted.json() == {}
        gone = await taskctl("get", long["id"])
        assert gone.returncode == RPC_ERROR and "NOT_FOUND" in gone.stderr, gone
        # A watcher of a deleted task is told so, and exits 1 (the task did not succeed).
        watched = await watch.finish(within=20)
    assert watched.returncode == TASK_UNSUCCESSFUL, watched
    events = watched.json_values()
    assert events[0]["task"]["state"] == "TASK_STATE_RUNNING"
    assert events[-1]["type"] == "TASK_EVENT_TYPE_DELETED"
    assert events[-1]["task"]["id"] == long["id"]

    for i in range(3):
        await taskctl.ok("create", "sum2", "-p", f"first={i}", "-p", "second=0",
                         "--label", "suite=bulk")  # fmt: skip
    kept = await taskctl.ok("create", "sum2", "-p", "first=9", "-p", "second=0",
                            "--label", "suite=keep")  # fmt: skip

    # No filter: refused before anything is sent, with or without --all (which needs --yes).
    no_filter = await taskctl("delete-all")
    assert no_filter.returncode == USAGE and "--all --yes" in no_filter.stderr, no_filter
    all_unconfirmed = await taskctl("delete-all", "--all")
    assert all_unconfirmed.returncode == USAGE and "--yes" in all_unconfirmed.stderr
    # A filter without --yes and no terminal to ask at: refused too.
    unconfirmed = await taskctl("delete-all", "--label", "suite=bulk")
    assert unconfirmed.returncode == USAGE and "--yes" in unconfirmed.stderr, unconfirmed
    assert len((await taskctl.ok("list"))["tasks"]) == 4

    bulk = await taskctl.ok("delete-all", "--label", "suite=bulk", "--yes")
    assert int(bulk["deleted_count"]) == 3
    assert ids((await taskctl.ok("list"))["tasks"]) == [kept["id"]]
    everything = await taskctl.ok("delete-all", "--all", "--yes")
    assert int(everything["deleted_count"]) == 1
    assert (await taskctl.ok("list"))["tasks"] == []


async def test_types_pause_resume_workers_and_stats(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    worker = await cluster.start_worker("--slots", "4")
    taskctl = Taskctl(scheduler.grpc_address)

    paused = await taskctl.ok("pause", "foo")
    assert paused["name"] == "foo" and paused["state"] == "TASK_TYPE_STATE_PAUSED"
    waiting = await taskctl.ok("create", "foo")
    # The worker is connected and leasing (a sum2 created later runs), but not the paused type.
    other = await taskctl("create", "sum2", "-p", "first=1", "-p", "second=1", "--wait")
    assert other.returncode == OK, other
    assert (await taskctl.ok("get", waiting["id"]))["state"] == "TASK_STATE_PENDING"

    types = await taskctl.ok("types")
    by_name = {t["name"]: t for t in types["task_types"]}
    assert set(by_name) >= {
        "foo", "bar", "baz", "process_data", "sum2", "mult3", "surprise", "send_email",
        "generate_report", "cpu_process",
    }  # fmt: skip
    assert by_name["foo"]["state"] == "TASK_TYPE_STATE_PAUSED"
    assert int(by_name["foo"]["counts"]["pending"]) == 1
    assert by_name["foo"]["connected_workers"] == 1
    assert by_name["sum2"]["state"] == "TASK_TYPE_STATE_ACTIVE"
    assert int(by_name["sum2"]["counts"]["succeeded"]) == 1

    resumed = await taskctl.ok("resume", "foo")
    assert resumed["name"] == "foo" and resumed["state"] == "TASK_TYPE_STATE_ACTIVE"
    watched = await taskctl("watch", waiting["id"])
    assert watched.returncode == OK, watched
    assert watched.json_values()[-1]["task"]["state"] == "TASK_STATE_SUCCEEDED"

    workers = await taskctl.ok("workers")
    (shown,) = workers["workers"]
    assert shown["id"] == worker.name and shown["pid"] == worker.pid
    assert shown["slots"] == 4
    assert {"foo", "sum2", "cpu_process"} <= set(shown["task_types"])
    assert shown["draining"] is False

    stats = await taskctl.ok("stats")
    assert int(stats["totals"]["succeeded"]) == 2
    assert int(stats["totals"]["pending"]) == 0
    by_type = {s["type"]: s["counts"] for s in stats["by_type"]}
    assert int(by_type["foo"]["succeeded"]) == 1 and int(by_type["sum2"]["succeeded"]) == 1
    assert int(stats["finished_last_minute"]) == 2
    assert stats["connected_workers"] == 1


async def test_errors_have_their_exit_statuses(cluster: Cluster, closed_port: int) -> None:
    scheduler = await cluster.start_scheduler("--task-types", "sum2")
    taskctl = Taskctl(scheduler.grpc_address)

    unknown_type = await taskctl("create", "sum3")
    assert unknown_type.returncode == RPC_ERROR, unknown_type
    assert "INVALID_ARGUMENT" in unknown_type.stderr and "sum2" in unknown_type.stderr
    assert unknown_type.stdout == ""
    bad_priority = await taskctl("create", "sum2", "--priority", "5000")
    assert bad_priority.returncode == RPC_ERROR, bad_priority
    assert "INVALID_ARGUMENT" in bad_priority.stderr and "priority" in bad_priority.stderr

    pending = await taskctl.ok("create", "sum2")  # a known type with no worker: it waits
    assert pending["state"] == "TASK_STATE_PENDING"
    not_retryable = await taskctl("retry", pending["id"])
    assert not_retryable.returncode == RPC_ERROR, not_retryable
    assert "FAILED_PRECONDITION" in not_retryable.stderr
    await taskctl.ok("delete", pending["id"])
    for command in ("get", "cancel", "retry", "delete", "watch"):
        missing = await taskctl(command, pending["id"])
        assert missing.returncode == RPC_ERROR, missing
        assert "NOT_FOUND" in missing.stderr and pending["id"] in missing.stderr, command

    usage = await taskctl("list", "--state", "sleeping")
    assert usage.returncode == USAGE and "sleeping" in usage.stderr, usage

    unreachable = await Taskctl(f"127.0.0.1:{closed_port}")("stats")
    assert unreachable.returncode == UNREACHABLE, unreachable
    assert "UNAVAILABLE" in unreachable.stderr and str(closed_port) in unreachable.stderr
    assert unreachable.stdout == ""
