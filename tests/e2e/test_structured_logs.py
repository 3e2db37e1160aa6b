"""Logs as a log shipper reads them: real scheduler and worker processes with
``ORCHESTRATOR_LOG_FORMAT=json`` (the variable, not the flag) write one JSON object per
line, and every line about a task names its task, and once leased its lease and worker.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.v1 import task_pb2
from tests.support.cluster import Cluster
from tests.support.tasks import request, wait_terminal

pytestmark = pytest.mark.slow

JSON_LOGS = {"ORCHESTRATOR_LOG_FORMAT": "json"}


def json_lines(text: str) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = json.loads(line)  # fails the test on any line that is not JSON
        assert isinstance(entry, dict), (number, line)
        assert {"ts", "level", "logger", "msg"} <= entry.keys(), (number, line)
        entries.append(entry)
    return entries


async def test_json_logs_name_the_task_lease_and_worker_on_every_line_about_a_task(
    cluster: Cluster,
) -> None:
    scheduler = await cluster.start_scheduler(env=JSON_LOGS)
    worker = await cluster.start_worker(worker_id="w-json", extra_env=JSON_LOGS)
    tasks = cluster.tasks()
    good = await tasks.CreateTask(request("sum2", {"first": 1, "second": 2}))
    bad = await tasks.CreateTask(request("sum2", {"first": 1}, max_attempts=1))
    succeeded = await wait_terminal(tasks, good.id)
    failed = await wait_terminal(tasks, bad.id)
    assert succeeded.state == task_pb2.TASK_STATE_SUCCEEDED
    assert failed.state == task_pb2.TASK_STATE_FAILED
    scheduler.terminate()
    worker.terminate()

    entries = json_lines(scheduler.stderr()) + json_lines(worker.stderr())
    assert {e["level"] for e in entries} >= {"info", "debug"}  # --log-level debug held
    for done in (succeeded, failed):
        about = [e for e in entries if done.id in json.dumps(e)]
        assert about, f"no line about {done.id}"
        for entry in about:
            assert entry.get("task_id") == done.id, entry
        leased = [e for e in about if "lease_id" in e]
        # The scheduler granting it and the worker running it, both naming the lease.
        assert {e["logger"].split(".")[0] for e in leased} == {
            "scheduler_service",
            "worker_service",
        }, leased
        (attempt,) = done.attempt_history
        assert {e["lease_id"] for e in leased} == {attempt.lease_id}, leased
        assert all(e.get("worker_id") == "w-json" for e in leased), leased
    failure = [e for e in entries if e.get("task_id") == failed.id and "second" in e["msg"]]
    assert failure, "no line with the handler's error about the missing field"
