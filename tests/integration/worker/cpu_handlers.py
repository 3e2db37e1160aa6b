"""CPU-bound test handlers: module level, so that the spawned pool imports them by name."""

from __future__ import annotations

import os
import time
from typing import Any

from worker_service import TaskInfo, handler


@handler("die", cpu_bound=True)
def die(payload: dict[str, Any], info: TaskInfo) -> dict[str, Any]:
    """Kill the pool process, as a segfault in a C extension would."""
    os._exit(3)


@handler("whoami", cpu_bound=True)
def whoami(payload: dict[str, Any], info: TaskInfo) -> dict[str, Any]:
    return {"pid": os.getpid(), "task_id": info.task_id, "attempt": info.attempt}


@handler("nap", cpu_bound=True)
def nap(payload: dict[str, Any], info: TaskInfo) -> dict[str, Any]:
    time.sleep(payload.get("seconds", 0.0))
    return {}
