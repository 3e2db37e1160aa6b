"""The task-orchestrator worker, and the API for writing task handlers::

    from worker_service import PermanentError, TaskContext, handler

    @handler("resize")
    async def resize(payload: dict, ctx: TaskContext) -> dict:
        if "url" not in payload:
            raise PermanentError("payload field 'url' is required")
        ...
        return {"width": 640}

Run it with ``orchestrator-worker --module my_package.handlers``. See
:mod:`worker_service.registry` for sync and CPU-bound handlers.
"""

from __future__ import annotations

from .context import HandlerSettings, TaskContext, TaskInfo
from .errors import PermanentError, TaskFailed
from .registry import handler

__all__ = [
    "HandlerSettings",
    "PermanentError",
    "TaskContext",
    "TaskFailed",
    "TaskInfo",
    "handler",
]
