"""What a handler knows about the task it runs, and how it reports progress.

Async and thread handlers receive a :class:`TaskContext`; CPU-bound handlers run in another
process, where an event loop object or a logger cannot follow, so they receive the small
picklable :class:`TaskInfo` instead. Both are frozen: a handler reads them, never changes
them.

Progress. A running async or thread handler may say how far it got::

    ctx.report_progress(40, "resized 4 of 10 images", {"done": 4, "total": 10})

``report_progress(percent=None, message="", details=None)`` is a plain (not async) call that
never blocks and never fails for reasons outside the handler (the stream to the scheduler
closed or broke, the attempt already ended: the report is then silently dropped). It raises
``ValueError`` for bad arguments only: ``percent`` must be a number from 0 to 100 (or
``None`` when only a message is reported), ``message`` a string (longer than 1000
characters it is cut), ``details`` a mapping that is a JSON object (no NaN) of at most
64 KiB as canonical JSON. A thread handler may call it from its own thread.

It is cheap to call often, even in a tight loop: only the latest report of each task is
kept, and the worker sends what is pending at most about every 100 ms
(:data:`~worker_service.connection.PROGRESS_INTERVAL`) in one ``ProgressReport`` for all its
tasks. The latest report made before the handler returned always goes out before the
task's result; nothing reported after the result was queued is sent. The scheduler keeps
the latest report as the task's ``progress``.

CPU-bound handlers (``cpu_bound=True``) cannot report progress yet: :class:`TaskInfo` has
no channel back from the process pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import numbers
import threading
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator_client.convert import dumps_json

from .fetch_policy import FetchAllowlist

#: Longer progress messages are cut.
MAX_PROGRESS_MESSAGE_CHARS = 1000
#: The most bytes of canonical JSON a progress report's ``details`` may take.
MAX_PROGRESS_DETAILS_BYTES = 64 * 1024

#: The default of ``--fetch-max-bytes``: 10 MiB.
DEFAULT_FETCH_MAX_BYTES = 10 * 1024 * 1024

#: Where a context's progress reports go: called on the event loop's thread.
ProgressSink = Callable[[pb.TaskProgress], None]


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
    #: Total time allowed for one fetch of ``bar`` and ``process_data``: name lookups,
    #: connections, every redirect and the body.
    http_timeout: float = 10.0
    #: Targets ``bar`` and ``process_data`` may fetch besides the public internet: host
    #: names, IP addresses, CIDR networks (``--fetch-allow``; see :mod:`.fetch_policy`).
    fetch_allow: tuple[str, ...] = ()
    #: The largest response body ``process_data`` reads (``--fetch-max-bytes``).
    fetch_max_bytes: int = DEFAULT_FETCH_MAX_BYTES

    def __post_init__(self) -> None:
        if isinstance(self.fetch_allow, str):
            raise TypeError("fetch_allow must be a tuple of entries, not one string")
        FetchAllowlist.parse(self.fetch_allow)  # ValueError names a bad entry
        if self.fetch_max_bytes < 1:
            raise ValueError(f"fetch_max_bytes must be at least 1, got {self.fetch_max_bytes}")

    @property
    def fetch_allowlist(self) -> FetchAllowlist:
        """:attr:`fetch_allow`, parsed."""
        return FetchAllowlist.parse(self.fetch_allow)


@dataclass(frozen=True)
class TaskInfo:
    """The task a CPU-bound handler runs; picklable, so it crosses into the process pool.

    It carries no way back to the worker: a CPU-bound handler cannot report progress (only
    :class:`TaskContext` has :meth:`~TaskContext.report_progress`).
    """

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

    :meth:`report_progress` tells the scheduler how far the handler got (see the module
    docstring). The worker sets ``progress_sink``; a context built without one (in a
    handler's own unit tests, say) validates the reports and drops them, and a test may pass
    ``progress_sink=reports.append`` to see them.
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
    #: Receives each validated report, on the thread of the event loop that was running when
    #: the context was built (or at once, on the caller's thread, when none was).
    progress_sink: ProgressSink | None = field(default=None, repr=False, compare=False)
    log: TaskLogger = field(init=False)
    _progress: _ProgressHandover | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        logger = logging.getLogger(f"worker_service.task.{self.type}")
        extra = {"task_id": self.task_id, "lease_id": self.lease_id, "worker_id": self.worker_id}
        object.__setattr__(self, "log", TaskLogger(logger, extra))
        sink = self.progress_sink
        object.__setattr__(self, "_progress", None if sink is None else _ProgressHandover(sink))

    def report_progress(
        self,
        percent: float | None = None,
        message: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Report how far the handler got: ``percent`` from 0 to 100 (``None``: unknown), a
        short ``message`` for people, ``details`` a small JSON object of the handler's own.

        Callable from the event loop or from a thread handler's thread; never blocks, and
        only raises ``ValueError`` for invalid arguments. Only the latest report counts.
        """
        update = progress_update(self.lease_id, percent, message, details)
        if self._progress is not None:
            self._progress.put(update)

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


def progress_update(lease_id: str, percent: Any, message: Any, details: Any) -> pb.TaskProgress:
    """A validated ``TaskProgress``; ``ValueError`` for anything the contract refuses."""
    update = pb.TaskProgress(lease_id=lease_id)
    if percent is not None:
        if isinstance(percent, bool) or not isinstance(percent, numbers.Real):
            raise ValueError(f"percent must be a number from 0 to 100, got {percent!r}")
        value = float(percent)
        if not 0.0 <= value <= 100.0:  # NaN fails too
            raise ValueError(f"percent must be from 0 to 100, got {percent!r}")
        update.percent = value
    if not isinstance(message, str):
        raise ValueError(f"message must be a string, got {type(message).__name__}")
    if len(message) > MAX_PROGRESS_MESSAGE_CHARS:
        message = message[: MAX_PROGRESS_MESSAGE_CHARS - 1] + "…"
    update.message = message
    if details is not None:
        update.details_json = _details_json(details)
    return update


def _details_json(details: Any) -> bytes:
    if not isinstance(details, Mapping):
        raise ValueError(f"details must be a mapping (a JSON object), got {type(details).__name__}")
    try:
        value = dict(details)
        json.dumps(value, allow_nan=False)  # dumps_json would let NaN through
        data = dumps_json(value).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"details must be JSON: {exc}") from exc
    if len(data) > MAX_PROGRESS_DETAILS_BYTES:
        raise ValueError(
            f"details are too large: {len(data)} bytes of JSON > {MAX_PROGRESS_DETAILS_BYTES}"
        )
    return data


class _ProgressHandover:
    """Brings reports to the sink on the event loop's thread, from whichever thread.

    On the loop, a report goes to the sink at once. From another thread only the latest
    report waits here, and at most one callback is scheduled on the loop at a time, so a
    thread reporting in a tight loop does not flood the loop with callbacks.
    """

    def __init__(self, sink: ProgressSink) -> None:
        self._sink = sink
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._lock = threading.Lock()
        self._latest: pb.TaskProgress | None = None
        self._scheduled = False

    def put(self, update: pb.TaskProgress) -> None:
        loop = self._loop
        if loop is None or _running_loop() is loop:
            with self._lock:
                self._latest = None  # older than this one, from a thread
            self._sink(update)
            return
        with self._lock:
            self._latest = update
            if self._scheduled:
                return
            self._scheduled = True
        # RuntimeError: the loop is closed, nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._hand_over)

    def _hand_over(self) -> None:
        with self._lock:
            update, self._latest = self._latest, None
            self._scheduled = False
        if update is not None:
            self._sink(update)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
