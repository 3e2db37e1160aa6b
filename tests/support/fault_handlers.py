"""Recording handlers for the fault suite (``--module tests.support.fault_handlers``).

``recorded_slow_first``: like ``recorded`` (see :mod:`tests.support.recording_handlers`,
whose records the checker reads), but the first attempt sleeps ``first_sleep`` seconds (a
long task the fault catches in the middle) and later attempts ``sleep`` seconds.
"""

from __future__ import annotations

from typing import Any

from tests.support import recording_handlers
from worker_service import TaskContext, handler


@handler("recorded_slow_first")
async def recorded_slow_first(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    if ctx.attempt == 1:
        payload = {**payload, "sleep": payload.get("first_sleep", 60.0)}
    return await recording_handlers._run(payload, ctx)
