"""A silent network hang between a worker and the scheduler.

The worker reaches the scheduler through :class:`tests.support.proxy.TcpProxy`. While the
worker holds a long task, the proxy blackholes the link: every byte is read and dropped, no
FIN, no RST — only HTTP/2 keepalive can tell (the worker pings after 10 s of silence, the
scheduler after 5 s; a ping unanswered for 5 s closes the connection). The scheduler runs
with its default heartbeat (5 s) and lease TTL (30 s), so neither its lease reaper (30 s)
nor its silent-stream limit (two lease periods, 60 s) can be what notices within 15 s: both
sides must detect the dead link by keepalive. Then the link heals, the worker reconnects by
itself, the task runs again and completes once.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.faults.checker import check
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, SchedulerProcess
from tests.support.proxy import TcpProxy
from tests.support.tasks import request, wait_terminal

#: Keepalive: a ping at most 10 s after the last byte received, 5 s for the answer, so a
#: dead link is noticed at most 15 s after its last byte, which came before the blackhole.
DETECT_WITHIN = 15.0
#: What the measurement itself adds: the log line written and found by a 50 ms poll.
MEASURING = 0.5
#: How long the test watches for detection, beyond the bound, to report the real figure.
WATCH_FOR = 75.0
DEFAULT_TIMINGS = ("--heartbeat-interval", "5", "--lease-ttl", "30", "--log-level", "info")


def _count(process: ManagedProcess, needle: str) -> int:
    return process.stderr().count(needle)


@pytest.mark.timeout(180)
async def test_blackholed_link_is_detected_on_both_sides_and_heals(
    cluster: Cluster, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    scheduler: SchedulerProcess = await cluster.start_scheduler(*DEFAULT_TIMINGS)
    proxy = await TcpProxy.start(scheduler.grpc_address)
    try:
        worker = await cluster.start_worker(
            "--module", "tests.support.fault_handlers",
            "--scheduler", proxy.address,  # overrides the direct address
            "--slots", "2",
            "--reconnect-max-delay", "1",
            scheduler=scheduler,
            worker_id="hang-worker",
        )  # fmt: skip
        stub = cluster.tasks(scheduler)  # the test's own channel goes direct
        created = await stub.CreateTask(
            request(
                "recorded_slow_first",
                {"record_dir": str(records), "first_sleep": 120.0, "sleep": 0.2},
            )
        )

        async def running() -> bool:
            task = await stub.GetTask(task_service_pb2.GetTaskRequest(id=created.id))
            return task.state == task_pb2.TASK_STATE_RUNNING

        await eventually(running, timeout=10, message="the long task is running")

        failed_line = f"connection to the scheduler at {proxy.address} failed"
        failures_before = _count(worker, failed_line)
        disconnects_before = _count(scheduler, "worker disconnected")
        connects_before = _count(worker, "connected to scheduler")

        proxy.blackhole()
        started = time.monotonic()
        seen: dict[str, float] = {}
        lease_back: list[task_pb2.Attempt] = []

        async def detected() -> bool:
            now = time.monotonic() - started
            if "worker" not in seen and _count(worker, failed_line) > failures_before:
                seen["worker"] = now
            if "scheduler" not in seen and _count(scheduler, "worker disconnected") > (
                disconnects_before
            ):
                seen["scheduler"] = now
            if "lease back" not in seen:
                # The first attempt has ended (WORKER_LOST): the lease went back to the
                # queue, even if the task was leased again at once (RUNNING again).
                task = await stub.GetTask(task_service_pb2.GetTaskRequest(id=created.id))
                history = task.attempt_history
                if history and history[0].HasField("finished_at"):
                    seen["lease back"] = now
                    lease_back.append(history[0])
            return len(seen) == 3

        with contextlib.suppress(AssertionError):  # reported below with what was seen
            await eventually(detected, timeout=WATCH_FOR, interval=0.05, message="detection")
        figures = ", ".join(f"{side} after {at:.2f} s" for side, at in sorted(seen.items()))
        how = f" ({lease_back[0].error})" if lease_back else ""
        print(
            f"\nblackhole detected: {figures or 'nowhere'}{how} (bound {DETECT_WITHIN:.0f} s; "
            f"{proxy.dropped_bytes} bytes dropped by the proxy)"
        )
        for side in ("worker", "scheduler", "lease back"):
            assert side in seen, (
                f"{side}: the blackhole was not detected within {WATCH_FOR:.0f} s ({figures})"
            )
            assert seen[side] <= DETECT_WITHIN + MEASURING, (
                f"{side} detected the blackhole only after {seen[side]:.1f} s "
                f"(keepalive should bound it at {DETECT_WITHIN:.0f} s): {figures}"
            )
        assert scheduler.running and worker.running, cluster.dump()

        healed = time.monotonic()
        proxy.heal()

        async def reconnected() -> bool:
            return _count(worker, "connected to scheduler") > connects_before

        await eventually(reconnected, timeout=20, message="the worker reconnected by itself")
        reconnect_after = time.monotonic() - healed
        done = await wait_terminal(stub, created.id, timeout=30)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
        outcomes = [task_pb2.AttemptOutcome.Name(a.outcome) for a in done.attempt_history]
        assert outcomes[0] == "ATTEMPT_OUTCOME_WORKER_LOST", outcomes
        assert outcomes[-1] == "ATTEMPT_OUTCOME_SUCCEEDED", outcomes
        report = check(
            cluster.location, acknowledged=[created.id], records=records, lease_ttl=30.0,
            require_terminal=True,
        )  # fmt: skip
        print(
            f"healed: worker reconnected after {reconnect_after:.1f} s, task succeeded "
            f"(attempts {outcomes}); checker ok ({report.tasks} task, {report.attempts} "
            "attempts)"
        )
    finally:
        await proxy.close()
