"""Task handlers that record what they ran: the workers' own account, for checkers.

Loaded by real worker processes with ``--module tests.support.recording_handlers``. Each
run appends one JSON line to ``<payload.record_dir>/<worker_id>.jsonl``: task id, attempt,
lease, worker, start and end (wall clock, seconds) and outcome. A test compares these
lines with what the scheduler recorded (exactly one success per task, group order, limits).

Payload: ``record_dir`` (required), ``sleep`` (seconds, default 0.005), ``fail_once``
(fail the first attempt, to exercise retries).

``recorded_cpu`` records the same from a process-pool child. Poison, for the fault suite
(``tests/faults/test_poison.py``): ``suicide`` kills the pool child it runs in,
``kill_worker`` kills the worker process itself, ``hang`` never returns.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from worker_service import TaskContext, TaskFailed, TaskInfo, handler


async def _run(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    start = time.time()
    await asyncio.sleep(float(payload.get("sleep", 0.005)))
    failed = bool(payload.get("fail_once")) and ctx.attempt == 1
    end = time.time()
    line = {
        "task_id": ctx.task_id,
        "type": ctx.type,
        "attempt": ctx.attempt,
        "lease_id": ctx.lease_id,
        "worker_id": ctx.worker_id,
        "start": start,
        "end": end,
        "outcome": "failed" if failed else "succeeded",
    }
    _append(Path(payload["record_dir"]) / f"{ctx.worker_id}.jsonl", line)
    if failed:
        raise TaskFailed("failing once on purpose")
    return {"ran_on": ctx.worker_id}


def _append(record: Path, line: dict[str, Any]) -> None:
    with record.open("a") as out:  # one short line, one write: appends never interleave
        out.write(json.dumps(line) + "\n")


@handler("recorded")
async def recorded(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return await _run(payload, ctx)


@handler("recorded_limited")
async def recorded_limited(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """The same, under a second type name, to put limits on."""
    return await _run(payload, ctx)


def read_records(record_dir: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted(record_dir.glob("*.jsonl")):
        lines.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return lines


@handler("progressing")
async def progressing(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Reports 25, 50 and 75 % (with a step number) before finishing."""
    for step, percent in enumerate((25, 50, 75), start=1):
        ctx.report_progress(percent, f"step {step}", {"step": step})
        await asyncio.sleep(float(payload.get("pause", 0.2)))
    return await _run(payload, ctx)


@handler("recorded_cpu", cpu_bound=True)
def recorded_cpu(payload: dict[str, Any], info: TaskInfo) -> dict[str, Any]:
    """A recorded run in the process pool (whose child knows no worker id: ``pool-<pid>``)."""
    start = time.time()
    worker_id = f"pool-{os.getpid()}"
    line = {
        "task_id": info.task_id,
        "type": info.type,
        "attempt": info.attempt,
        "lease_id": info.lease_id,
        "worker_id": worker_id,
        "start": start,
        "end": time.time(),
        "outcome": "succeeded",
    }
    _append(Path(payload["record_dir"]) / f"{worker_id}.jsonl", line)
    return {"ran_on": worker_id}


@handler("suicide", cpu_bound=True)
def suicide(payload: dict[str, Any], info: TaskInfo) -> dict[str, Any]:
    """Kill the process-pool child running it, as a segfaulting extension would."""
    os._exit(9)


@handler("kill_worker")
async def kill_worker(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Kill the worker process itself: an in-process (async or thread) handler can."""
    os._exit(9)


@handler("hang")
async def hang(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Never return (until cancelled)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")
