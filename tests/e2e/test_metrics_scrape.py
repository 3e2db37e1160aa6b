"""The scheduler's ``/metrics``, scraped over real HTTP after a known run: every figure is
the exact count of what the test did (tasks created, started, finished, retried; the
queue depth per state; histogram counts; workers; gRPC calls), and ``/healthz`` and
``/readyz`` answer with their JSON."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.processes import SchedulerProcess
from tests.support.tasks import request, wait_terminal

MODULE = ("--module", "tests.support.recording_handlers")
TYPES = ("--task-types", "recorded,sum2,mult3")
STATES = ("scheduled", "pending", "running", "succeeded", "failed", "cancelled")
#: How long each ``recorded`` attempt sleeps: a floor for the run-duration histogram.
SLEEP = 0.2

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def get(scheduler: SchedulerProcess, path: str) -> tuple[int, str, str]:
    """Status, content type and body of a GET on the scheduler's HTTP side."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{scheduler.http_address}{path}") as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def scrape(scheduler: SchedulerProcess) -> Samples:
    status, content_type, body = await get(scheduler, "/metrics")
    assert status == 200, body
    assert content_type.startswith("text/plain"), content_type
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of one name, by its labels."""
    return {labels: v for (n, labels), v in samples.items() if n == name}


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for labels, v in series(samples, name).items()}


def recorded(records: str, **extra: Any) -> task_service_pb2.CreateTaskRequest:
    """A ``recorded`` task that fails its first attempt, retried after 50 ms."""
    return request(
        "recorded",
        {"record_dir": records, "sleep": SLEEP, "fail_once": True},
        backoff=task_pb2.BackoffPolicy(initial=duration_pb2.Duration(nanos=50_000_000)),
        **extra,
    )


def at(seconds_from_now: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int((time.time() + seconds_from_now) * 1e9))
    return stamp


async def test_metrics_count_exactly_what_a_known_run_did(cluster: Cluster, tmp_path: Path) -> None:
    scheduler = await cluster.start_scheduler(*TYPES)
    await cluster.start_worker(*MODULE)
    stub = cluster.tasks()
    records = tmp_path / "records"
    records.mkdir()

    # sum2: 3 succeed, 1 waits for next year, 1 is cancelled while it waits.
    # recorded: 2 fail once then succeed (2 retries), 1 fails for good (max_attempts 1).
    # mult3: 1 due in a second, to show dispatch latency counts from the due time.
    creates = [
        *(request("sum2", {"first": i, "second": 1}) for i in range(3)),
        request("sum2", run_at=at(365 * 86400)),
        request("sum2", run_at=at(365 * 86400)),
        recorded(str(records), max_attempts=3),
        recorded(str(records), max_attempts=3),
        recorded(str(records), max_attempts=1),
        request("mult3", {"first": 1, "second": 2, "third": 3}, run_at=at(1.0)),
    ]
    tasks = [await stub.CreateTask(message) for message in creates]
    await stub.CancelTask(task_service_pb2.CancelTaskRequest(id=tasks[4].id))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateTask(request("no_such_type"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ends = [await wait_terminal(stub, t.id) for t in tasks if t.id != tasks[3].id]
    assert [t.state for t in ends].count(task_pb2.TASK_STATE_FAILED) == 1

    # Results are counted right after their commit, which GetTask may see first.
    async def all_counted() -> Samples | None:
        samples = await scrape(scheduler)
        finished = sum(series(samples, "orchestrator_tasks_finished_total").values())
        return samples if finished == 8 else None

    samples = await eventually(all_counted, message="8 finished tasks counted")

    assert by_label(samples, "orchestrator_tasks_created_total", "type") == {
        "sum2": 5,
        "recorded": 3,
        "mult3": 1,
    }
    # Attempts: sum2 3, recorded 2 x 2 + 1, mult3 1.
    assert by_label(samples, "orchestrator_tasks_started_total", "type") == {
        "sum2": 3,
        "recorded": 5,
        "mult3": 1,
    }
    finished = {
        (dict(labels)["type"], dict(labels)["outcome"]): v
        for labels, v in series(samples, "orchestrator_tasks_finished_total").items()
    }
    assert finished == {
        ("sum2", "succeeded"): 3,
        ("sum2", "cancelled"): 1,
        ("recorded", "succeeded"): 2,
        ("recorded", "failed"): 1,
        ("mult3", "succeeded"): 1,
    }
    assert by_label(samples, "orchestrator_task_retries_total", "type") == {"recorded": 2}
    assert series(samples, "orchestrator_lease_expiries_total") == {}
    assert value(samples, "orchestrator_results_refused_total") == 0

    depth = {
        (dict(labels)["type"], dict(labels)["state"]): v
        for labels, v in series(samples, "orchestrator_queue_depth").items()
    }
    expected_depth: Mapping[str, Mapping[str, int]] = {
        "sum2": {"succeeded": 3, "scheduled": 1, "cancelled": 1},
        "recorded": {"succeeded": 2, "failed": 1},
        "mult3": {"succeeded": 1},
    }
    for type_name, counts in expected_depth.items():
        for state in STATES:
            assert depth[(type_name, state)] == counts.get(state, 0), (type_name, state, depth)
    # Every known type has every state, zeros included (the worker declared the built-ins).
    assert depth[("foo", "pending")] == 0
    assert {state for (_, state) in depth} == set(STATES)

    # One histogram observation per started attempt, by type.
    for histogram in (
        "orchestrator_dispatch_latency_seconds",
        "orchestrator_task_run_duration_seconds",
    ):
        counts = by_label(samples, f"{histogram}_count", "type")
        assert counts == {"sum2": 3, "recorded": 5, "mult3": 1}, histogram
    # mult3 was created a second before it was due, and leased promptly once due: its
    # latency counts from the due time, not from the create.
    assert (
        value(samples, "orchestrator_dispatch_latency_seconds_bucket", type="mult3", le="1.0") == 1
    )
    # Lease to result: every recorded attempt sleeps SLEEP seconds.
    run_sum = value(samples, "orchestrator_task_run_duration_seconds_sum", type="recorded")
    assert run_sum is not None and run_sum >= 5 * SLEEP

    assert value(samples, "orchestrator_connected_workers") == 1
    assert value(samples, "orchestrator_grpc_calls_total", method="CreateTask", code="OK") == 9
    assert (
        value(
            samples, "orchestrator_grpc_calls_total", method="CreateTask", code="INVALID_ARGUMENT"
        )
        == 1
    )
    assert value(samples, "orchestrator_grpc_calls_total", method="CancelTask", code="OK") == 1

    for path, answer in (("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})):
        status, content_type, body = await get(scheduler, path)
        assert (status, content_type.split(";")[0], json.loads(body)) == (
            200,
            "application/json",
            answer,
        ), path


async def test_queue_depth_follows_the_queue_between_scrapes(cluster: Cluster) -> None:
    """The gauge is read from the store at each scrape: pending with no worker, then
    succeeded once one connects."""
    scheduler = await cluster.start_scheduler(*TYPES)
    stub = cluster.tasks()
    made = await asyncio.gather(
        *(stub.CreateTask(request("sum2", {"first": i, "second": 1})) for i in range(4))
    )
    samples = await scrape(scheduler)
    assert value(samples, "orchestrator_queue_depth", type="sum2", state="pending") == 4
    assert value(samples, "orchestrator_queue_depth", type="sum2", state="succeeded") == 0
    assert value(samples, "orchestrator_connected_workers") == 0

    await cluster.start_worker()
    for task in made:
        await wait_terminal(stub, task.id)
    samples = await scrape(scheduler)
    assert value(samples, "orchestrator_queue_depth", type="sum2", state="pending") == 0
    assert value(samples, "orchestrator_queue_depth", type="sum2", state="succeeded") == 4


async def test_leases_taken_back_are_counted_by_reason(cluster: Cluster) -> None:
    """A worker killed mid-task (its stream ends: ``worker_lost``, and a retry), then the
    retry's worker frozen (SIGSTOP) past the attempt's timeout, so that the scheduler's
    reaper takes it back (``timeout``) and the task FAILS. (A live worker would report the
    timeout itself, as an ordinary result.)"""
    scheduler = await cluster.start_scheduler("--task-types", "hang")
    doomed = await cluster.start_worker(*MODULE)
    stub = cluster.tasks()
    task = await stub.CreateTask(
        request("hang", max_attempts=2, timeout=duration_pb2.Duration(seconds=1))
    )

    async def running(attempt: int) -> bool:
        found = await stub.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
        return found.state == task_pb2.TASK_STATE_RUNNING and found.attempts == attempt

    await eventually(lambda: running(1), message="attempt 1 running")
    doomed.kill()
    frozen = await cluster.start_worker(*MODULE)
    await eventually(lambda: running(2), message="attempt 2 running")
    frozen.signal(signal.SIGSTOP)
    try:
        ended = await wait_terminal(stub, task.id)
    finally:
        frozen.signal(signal.SIGCONT)
    assert ended.state == task_pb2.TASK_STATE_FAILED

    async def counted() -> Samples | None:
        samples = await scrape(scheduler)
        done = value(samples, "orchestrator_tasks_finished_total", type="hang", outcome="failed")
        return samples if done == 1 else None

    samples = await eventually(counted, message="the failed task counted")
    assert by_label(samples, "orchestrator_lease_expiries_total", "reason") == {
        "worker_lost": 1,
        "timeout": 1,
    }
    assert by_label(samples, "orchestrator_task_retries_total", "type") == {"hang": 1}
    assert by_label(samples, "orchestrator_tasks_started_total", "type") == {"hang": 2}
    # Neither attempt ended with a result of its worker: nothing to time.
    assert by_label(samples, "orchestrator_task_run_duration_seconds_count", "type") == {}
    assert value(samples, "orchestrator_queue_depth", type="hang", state="failed") == 1
    assert value(samples, "orchestrator_connected_workers") == 1
