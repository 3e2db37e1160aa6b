"""Load on one scheduler: ``profile.load_streams`` worker streams (one load-client process,
:mod:`tests.support.load_workers`) and a producer creating ``profile.load_tasks_per_second``
tasks a second for ``profile.load_seconds`` seconds, a few per BatchCreateTasks call every
10 ms.

Dispatch latency is the lease's arrival at the load client minus the task's ``created_at``
(both on this host's wall clock): p99 under 50 ms. The scheduler's RSS stays under 1 GB.
Every task completes once (the checker).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import grpc
import pytest

from orchestrator.v1 import admin_service_pb2, task_service_pb2
from tests.faults.checker import check
from tests.faults.profile import Profile
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, SchedulerProcess
from tests.support.tasks import request

P99_LIMIT_MS = 50.0
RSS_LIMIT_BYTES = 1024**3
#: Production-like timings: heartbeats every 5 s, not the fast suite's 0.5 s.
SCHEDULER = (
    "--task-types", "load",
    "--heartbeat-interval", "5",
    "--lease-ttl", "30",
    "--log-level", "info",
)  # fmt: skip


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def _produce(
    cluster: Cluster, scheduler: SchedulerProcess, rate: int, seconds: float
) -> tuple[list[str], list[float]]:
    """Create ``rate`` tasks a second for ``seconds``: every 10 ms, the tasks due by then in
    one BatchCreateTasks call. Answers the ids and the call latencies (ms).

    What this test loads is dispatch to many streams, so tasks arrive the way a busy
    service would send them, a few per call; the cost of one call per task is measured in
    ``bench/``.
    """
    stub = cluster.tasks(scheduler)
    total = int(rate * seconds)
    ids: list[str] = []
    create_ms: list[float] = []
    inflight = asyncio.Semaphore(50)

    async def create(first: int, last: int) -> None:
        async with inflight:
            started = time.monotonic()
            batch = task_service_pb2.BatchCreateTasksRequest(
                tasks=[request("load", {"n": i}) for i in range(first, last)]
            )
            answer = await stub.BatchCreateTasks(batch, timeout=30)
            create_ms.append((time.monotonic() - started) * 1000)
            ids.extend(task.id for task in answer.tasks)

    calls: list[asyncio.Task[None]] = []
    made = 0
    start = time.monotonic()
    while made < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        if due > made:
            calls.append(asyncio.create_task(create(made, due)))
            made = due
        await asyncio.sleep(0.01)  # the pacing tick of the producer, not synchronisation
    await asyncio.gather(*calls)
    return ids, create_ms


@pytest.mark.timeout(600)
async def test_many_streams_dispatch_latency_and_memory(
    cluster: Cluster, tmp_path: Path, profile: Profile
) -> None:
    scheduler = await cluster.start_scheduler(*SCHEDULER)
    summary_path = tmp_path / "load-summary.json"
    started = time.monotonic()
    load = ManagedProcess(
        "load-workers",
        [
            sys.executable, "-m", "tests.support.load_workers",
            "--target", scheduler.grpc_address,
            "--streams", str(profile.load_streams),
            "--slots", "4",
            "--type", "load",
            "--out", str(summary_path),
        ],
        tmp_path,
        env=None,
    )  # fmt: skip
    cluster.workers.append(load)  # stopped at teardown if still running

    def ready() -> bool:
        assert load.running, load.dump()
        return f"ready {profile.load_streams}" in load.stdout()

    await eventually(ready, timeout=120, interval=0.1, message="every load stream welcomed")
    connect_seconds = time.monotonic() - started
    admin = cluster.admin(scheduler)

    async def all_registered() -> bool:  # the welcome comes first, the registration after
        listed = await admin.ListWorkers(
            admin_service_pb2.ListWorkersRequest(page_size=1000), timeout=10
        )
        return len(listed.workers) == profile.load_streams

    await eventually(all_registered, timeout=60, interval=0.1, message="every stream registered")

    peak_rss = rss_bytes(scheduler.pid)

    async def sample_rss() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, rss_bytes(scheduler.pid))
            await asyncio.sleep(0.25)  # the sampling period

    sampler = asyncio.create_task(sample_rss())
    produce_started = time.monotonic()
    cpu_before = {
        name: cpu_seconds(p.pid) for name, p in (("scheduler", scheduler), ("load", load))
    }
    cpu_before["test"] = time.process_time()
    try:
        ids, create_ms = await _produce(
            cluster, scheduler, profile.load_tasks_per_second, profile.load_seconds
        )
        produce_seconds = time.monotonic() - produce_started
        cpu = {
            "scheduler": cpu_seconds(scheduler.pid) - cpu_before["scheduler"],
            "load client": cpu_seconds(load.pid) - cpu_before["load"],
            "producer": time.process_time() - cpu_before["test"],
        }
        total = len(ids)

        async def all_succeeded() -> bool:
            try:
                stats = await admin.GetStats(admin_service_pb2.GetStatsRequest(), timeout=5)
            except grpc.aio.AioRpcError:
                return False
            return stats.totals.succeeded == total

        await eventually(all_succeeded, timeout=60, interval=0.1, message="every task done")
    finally:
        sampler.cancel()
    assert load.terminate(30) == 0, load.dump()
    summary = json.loads(summary_path.read_text())
    latencies = sorted(summary["latencies_ms"])
    create_ms.sort()
    figures = (
        f"\nload ({profile.name}): {summary['streams']} streams (all welcomed after "
        f"{connect_seconds:.1f} s), {total} tasks in {produce_seconds:.1f} s "
        f"({total / produce_seconds:.0f}/s asked {profile.load_tasks_per_second}/s); "
        f"dispatch latency p50 {percentile(latencies, 0.5):.1f} ms, "
        f"p99 {percentile(latencies, 0.99):.1f} ms, max {latencies[-1]:.1f} ms; "
        f"batch create p50 {percentile(create_ms, 0.5):.1f} ms, "
        f"p99 {percentile(create_ms, 0.99):.1f} "
        f"ms; scheduler peak RSS {peak_rss / 2**20:.0f} MiB; leases {summary['leases']}, "
        f"refused {summary['refused']}, cancels {summary['cancels']}; CPU while producing: "
        + ", ".join(f"{name} {used / produce_seconds:.0%}" for name, used in cpu.items())
        + f" (of {os.cpu_count()} CPUs)"
    )
    print(figures)
    assert not summary["errors"], summary["errors"]
    assert summary["streams"] == profile.load_streams
    assert summary["leases"] >= total, figures
    assert summary["refused"] == 0, figures
    report = check(cluster.location, acknowledged=ids, lease_ttl=30.0, require_terminal=True)
    assert report.tasks == total
    assert peak_rss < RSS_LIMIT_BYTES, figures
    assert percentile(latencies, 0.99) < P99_LIMIT_MS, figures
