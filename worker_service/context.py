"""What a handler knows about the task it runs.

Async and thread handlers receive a :class:`TaskContext`; CPU-bound handlers run in another
process, where an event loop object or a logger cannot follow, so they receive the small
picklable :class:`TaskInfo` instead. Both are frozen: a handler reads them, never changes
them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class HandlerSettings:
    """The worker options that built-in handlers need, typed, instead of the whole config.

    Handlers get only this, never ``os.environ`` or the command line, so a test builds one
    directly and the handlers stay independent of how the worker was started.
    """

    #: URL ``bar`` fetches when the payload has no ``url``; empty means "fail with no url".
    bar_url: str = ""
    #: URL ``process_data`` fetches when the payload has no ``url``.
    fetch_url: str = ""
    #: Where ``send_email`` writes ``.eml`` files when no SMTP host is configured.
    outbox_dir: Path = Path("outbox")
    #: Where ``generate_report`` writes its reports.
    reports_dir: Path = Path("reports")
    #: SMTP relay for ``send_email``; empty means "write to the outbox instead".
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "orchestrator@localhost"
    #: How long ``foo`` sleeps (the reference sleeps 3 s; tests set it small).
    foo_seconds: float = 3.0
    #: Total time allowed for one HTTP request of ``bar`` and ``process_data``.
    http_timeout: float = 10.0


@dataclass(frozen=True)
class TaskInfo:
    """The task a CPU-bound handler runs; picklable, so it crosses into the process pool."""

    task_id: str
    type: str
    attempt: int
    max_attempts: int
    lease_id: str


class TaskLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds ``task_id``, ``lease_id`` and ``worker_id`` to every line, keeping the caller's
    own ``extra=`` fields (the standard adapter of Python 3.11 would drop them)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


@dataclass(frozen=True)
class TaskContext:
    """The running attempt of a task, as an async or thread handler sees it.

    ``cancelled`` is set when the attempt is being stopped (cancelled by the scheduler,
    timed out, or returned on shutdown). An async handler is also cancelled the usual asyncio
    way; a thread handler cannot be, so a long one should check ``cancelled.is_set()`` now and
    then and give up early.
    """

    task_id: str
    type: str
    attempt: int
    max_attempts: int
    lease_id: str
    worker_id: str
    settings: HandlerSettings
    labels: Mapping[str, str] = field(default_factory=dict)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    log: TaskLogger = field(init=False)

    def __post_init__(self) -> None:
        logger = logging.getLogger(f"worker_service.task.{self.type}")
        extra = {"task_id": self.task_id, "lease_id": self.lease_id, "worker_id": self.worker_id}
        object.__setattr__(self, "log", TaskLogger(logger, extra))

    @property
    def info(self) -> TaskInfo:
        """The picklable part, as CPU-bound handlers receive it."""
        return TaskInfo(
            task_id=self.task_id,
            type=self.type,
            attempt=self.attempt,
            max_attempts=self.max_attempts,
            lease_id=self.lease_id,
        )
