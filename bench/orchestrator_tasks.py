"""The benchmark's no-op task for task-orchestrator workers
(``orchestrator-worker --module bench.orchestrator_tasks``)."""

from __future__ import annotations

from typing import Any

from bench.starts import record
from worker_service import TaskContext, handler


@handler("bench_noop")
async def bench_noop(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    record(float(payload["created"]), float(payload.get("due", 0.0)))
    return {}
