"""ExplainTask end to end: each reason a task is not running, asked through grpcurl (by
reflection), ``taskctl explain`` and the Python client, which must all tell the same story;
and ``taskctl limits`` changing what ListTaskTypes shows.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf import timestamp_pb2

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from orchestrator_client import AsyncClient, NotFound
from tests.support.clis import GRPCURL_NOT_FOUND, TASKCTL_RPC_ERROR, Taskctl, grpcurl
from tests.support.cluster import Cluster
from tests.support.commands import parse_time
from tests.support.polling import eventually
from tests.support.tasks import micros, request, wait_terminal

if TYPE_CHECKING:  # the async stub class exists only in the generated .pyi file
    from orchestrator.v1.admin_service_pb2_grpc import AdminServiceAsyncStub

EXPLAIN = "orchestrator.v1.TaskService/ExplainTask"
MODULE = ("--module", "tests.support.recording_handlers")

# (code, blocking task id, until in µs or None) for each reason, in order.
Reasons = list[tuple[str, str, int | None]]


@dataclass
class Explained:
    """One task explained three ways; ``response`` is the Python client's answer."""

    response: task_service_pb2.ExplainTaskResponse
    taskctl: dict[str, Any]
    grpcurl: dict[str, Any]

    @property
    def codes(self) -> list[str]:
        return [task_service_pb2.ReasonCode.Name(r.code) for r in self.response.reasons]

    @property
    def first(self) -> task_service_pb2.Reason:
        return self.response.reasons[0]


def _json_reasons(answer: dict[str, Any]) -> Reasons:
    return [
        (
            r.get("code", "REASON_CODE_UNSPECIFIED"),
            r.get("blocking_task_id", ""),
            int(parse_time(r["until"]).timestamp() * 1e6) if r.get("until") else None,
        )
        for r in answer.get("reasons", [])
    ]


def _proto_reasons(response: task_service_pb2.ExplainTaskResponse) -> Reasons:
    return [
        (
            task_service_pb2.ReasonCode.Name(r.code),
            r.blocking_task_id,
            micros(r.until) if r.HasField("until") else None,
        )
        for r in response.reasons
    ]


class Explainer:
    def __init__(self, address: str, client: AsyncClient) -> None:
        self.address = address
        self.client = client
        self.taskctl = Taskctl(address)

    async def __call__(self, task_id: str) -> Explained:
        """Explain ``task_id`` through all three at once; they must agree (the time-dependent
        wording aside: "in 59.9 min" depends on when each was asked)."""
        response, by_taskctl, by_grpcurl = await asyncio.gather(
            self.client.explain_task(task_id),
            self.taskctl("explain", task_id),
            grpcurl(self.address, EXPLAIN, {"id": task_id}),
        )
        answers = {"taskctl": by_taskctl.json(), "grpcurl": by_grpcurl.json()}
        expected_state = task_pb2.TaskState.Name(response.state)
        assert response.task_id == task_id
        for name, answer in answers.items():
            assert answer["task_id"] == task_id, (name, answer)
            assert answer["state"] == expected_state, (name, answer, response)
            assert _json_reasons(answer) == _proto_reasons(response), (name, answer, response)
            assert answer["summary"].split(" because ")[0] == response.summary.split(" because ")[0]
        return Explained(response, answers["taskctl"], answers["grpcurl"])


async def test_explain_tells_why_through_every_client(cluster: Cluster, tmp_path: Path) -> None:
    scheduler = await cluster.start_scheduler("--task-types", "unserved")
    await cluster.start_worker(*MODULE, "--slots", "8", worker_id="w1")
    tasks, admin = cluster.tasks(), cluster.admin()
    taskctl = Taskctl(scheduler.grpc_address)
    record_dir = tmp_path / "records"
    record_dir.mkdir()

    async def is_running(task_id: str) -> bool:
        task = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=task_id))
        return task.state == task_pb2.TASK_STATE_RUNNING

    async with AsyncClient(scheduler.grpc_address) as client:
        explain = Explainer(scheduler.grpc_address, client)

        # (a) A known type that no connected worker serves.
        unserved = await tasks.CreateTask(request("unserved"))
        got = await explain(unserved.id)
        assert got.response.state == task_pb2.TASK_STATE_PENDING
        assert got.codes == ["REASON_CODE_NO_WORKER"]
        assert '"unserved"' in got.first.message
        assert got.response.summary.startswith(f"Task {unserved.id} is PENDING because ")

        # (b) A group whose first task is running: the second waits for it, by name.
        blocker = await tasks.CreateTask(request("foo", {"seconds": 5}, group="invoice-42"))
        await eventually(lambda: is_running(blocker.id), message="the group's first task running")
        follower = await tasks.CreateTask(request("foo", {"seconds": 0.05}, group="invoice-42"))
        got = await explain(follower.id)
        assert got.response.state == task_pb2.TASK_STATE_PENDING
        assert got.codes[0] == "REASON_CODE_GROUP_BLOCKED", got.response
        assert got.first.blocking_task_id == blocker.id
        assert '"invoice-42"' in got.first.message and blocker.id in got.first.message
        assert got.taskctl["reasons"][0]["blocking_task_id"] == blocker.id
        assert got.grpcurl["reasons"][0]["blocking_task_id"] == blocker.id
        running = await explain(blocker.id)
        assert running.codes == ["REASON_CODE_RUNNING"] and "w1" in running.first.message
        # The people's view names the blocking task too.
        table = await taskctl("explain", follower.id, json_mode=False)
        assert table.returncode == 0 and blocker.id in table.stdout and "invoice-42" in table.stdout

        # (c) A paused type.
        await admin.PauseTaskType(admin_service_pb2.PauseTaskTypeRequest(type="mult3"))
        paused = await tasks.CreateTask(request("mult3", {"first": 1, "second": 2, "third": 3}))
        got = await explain(paused.id)
        assert got.codes == ["REASON_CODE_TYPE_PAUSED"], got.response
        assert '"mult3"' in got.first.message
        assert "PENDING" in got.response.summary

        # (d) Not due for an hour: the reason ends by itself at run_at.
        run_at = timestamp_pb2.Timestamp()
        run_at.FromMicroseconds(int((time.time() + 3600) * 1e6))
        later = await tasks.CreateTask(request("sum2", {"first": 1, "second": 1}, run_at=run_at))
        got = await explain(later.id)
        assert got.response.state == task_pb2.TASK_STATE_SCHEDULED
        assert got.codes == ["REASON_CODE_NOT_DUE"], got.response
        assert got.first.HasField("until") and micros(got.first.until) == micros(run_at)
        assert parse_time(got.grpcurl["reasons"][0]["until"]) == parse_time(
            got.taskctl["reasons"][0]["until"]
        )
        assert "SCHEDULED" in got.response.summary

        # (e) A type limit set with taskctl, full: the next task waits for a free place.
        limited = await taskctl.ok("limits", "recorded_limited", "--max-running", "1")
        assert limited["name"] == "recorded_limited"
        assert limited["limits"]["max_running"] == 1
        assert (await _listed(admin, "recorded_limited")).limits.max_running == 1
        payload = {"record_dir": str(record_dir)}
        holder = await tasks.CreateTask(request("recorded_limited", {**payload, "sleep": 5}))
        await eventually(lambda: is_running(holder.id), message="the limited task running")
        queued = await tasks.CreateTask(request("recorded_limited", {**payload, "sleep": 0.01}))
        got = await explain(queued.id)
        assert got.codes == ["REASON_CODE_CONCURRENCY_LIMIT"], got.response
        assert '"recorded_limited"' in got.first.message and "at most 1" in got.first.message
        # Removing the limit with taskctl shows in ListTaskTypes and lets the task go.
        unlimited = await taskctl.ok("limits", "recorded_limited", "--max-running", "0")
        assert unlimited["limits"].get("max_running", 0) == 0
        assert (await _listed(admin, "recorded_limited")).limits.max_running == 0
        assert (await wait_terminal(tasks, queued.id)).state == task_pb2.TASK_STATE_SUCCEEDED

        # (f) An id that does not exist (any more).
        gone = await tasks.CreateTask(request("unserved"))
        await tasks.DeleteTask(task_service_pb2.DeleteTaskRequest(id=gone.id))
        with pytest.raises(NotFound) as raised:
            await client.explain_task(gone.id)
        assert gone.id in raised.value.details
        by_taskctl = await taskctl("explain", gone.id)
        assert by_taskctl.returncode == TASKCTL_RPC_ERROR, by_taskctl
        assert "NOT_FOUND" in by_taskctl.stderr and not by_taskctl.stdout.strip()
        by_grpcurl = await grpcurl(scheduler.grpc_address, EXPLAIN, {"id": gone.id})
        assert by_grpcurl.returncode == GRPCURL_NOT_FOUND, by_grpcurl
        assert "Code: NotFound" in by_grpcurl.stderr

        # (g) A finished task says how it finished.
        finished = await tasks.CreateTask(request("sum2", {"first": 20, "second": 22}))
        assert (await wait_terminal(tasks, finished.id)).state == task_pb2.TASK_STATE_SUCCEEDED
        got = await explain(finished.id)
        assert got.response.state == task_pb2.TASK_STATE_SUCCEEDED
        assert got.codes == ["REASON_CODE_FINISHED"]
        assert "SUCCEEDED" in got.response.summary and "SUCCEEDED" in got.first.message

        # Nothing long-running is left for the teardown to wait for.
        for task_id in (blocker.id, holder.id):
            await tasks.CancelTask(task_service_pb2.CancelTaskRequest(id=task_id))


async def _listed(admin: AdminServiceAsyncStub, name: str) -> admin_service_pb2.TaskType:
    listing = await admin.ListTaskTypes(admin_service_pb2.ListTaskTypesRequest())
    (found,) = [t for t in listing.task_types if t.name == name]
    return found
