"""``taskctl batch INPUT.csv -o RESULTS.csv``: a task per row, wait for all, write the results.

The run, in order:

1. ``ListTaskTypes``: rows of a type the scheduler does not know are UNSUPPORTED and never
   sent; malformed rows (see ``_batch_csv.read_rows``) are INVALID. A caller that may not
   list types (a ``client`` token: AdminService is for admins) skips this check; the
   scheduler's refusal of an unknown type then makes the row UNSUPPORTED (step 2).
2. The rows stream from the file into ``BatchCreateTasks`` calls of at most ``--chunk-size``
   (500) tasks and 4 MiB. Each task carries the label ``batch=<batch id>`` and the
   idempotency key ``batch:<batch id>:<task_id>``: the scheduler answers a key it has seen
   (per client id) with the task it made the first time, so running the same command again,
   after Ctrl-C or a ``kill -9`` halfway, creates nothing twice and ends with the same
   results, for as long as the scheduler keeps keys (``--idempotency-retention``, 24 h by
   default). This is the only call that creates tasks. A chunk is all or nothing: when the
   scheduler refuses one row (``INVALID_ARGUMENT`` naming ``tasks[i].type``/``payload``/…),
   that row is INVALID (UNSUPPORTED for an unknown type) and the chunk is sent again
   without it.
3. Once every row is sent, and only if some task has not finished, one ``WatchTasks`` on
   the label, from the first answer's highest revision, so no change after it is missed:
   each task's state is its batch answer's, then every change the watch reports (the newer
   revision wins). A watch broken by UNAVAILABLE or by falling behind (RESOURCE_EXHAUSTED)
   is opened again from the last revision received. When every task has finished the run
   ends; at ``--timeout-all`` (or if the watch cannot be kept open) one ``ListTasks`` pass
   on the label settles what it can, and unfinished rows keep their current state
   (SCHEDULED, PENDING, RUNNING).
4. The results file is written whole (a temporary file renamed into place), so it is
   never half-written; an interrupted run writes none.

Kept per row: ids, type, status, error and the result. Payloads are dropped once sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from orchestrator.v1 import task_pb2, task_service_pb2

from .._client import AsyncClient, _closing
from .._errors import (
    DeadlineExceeded,
    InvalidArgument,
    OrchestratorError,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    WatchEnded,
)
from .._requests import create_task_request
from .._states import TERMINAL_STATES, state_name
from ..convert import dict_from_struct
from ..protocol import MAX_MESSAGE_BYTES
from ._batch_csv import (
    CANCELLED,
    INVALID,
    UNSUPPORTED,
    InputError,
    InputRow,
    RowState,
    read_rows,
    status_counts,
    summary_text,
    unsupported_error,
    write_results,
)
from ._commands import MAX_PAGE_SIZE, all_task_types
from ._exit import ExitCode, UsageError
from ._values import format_duration

if TYPE_CHECKING:
    from ._commands import Context

#: The label every task of a batch carries; its value is the batch id.
BATCH_LABEL = "batch"
#: A batch id: what the scheduler accepts as a name, without ``:`` (the key's separator).
_BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}")
#: Bytes of tasks per call: well under the 16 MiB message limit, answers included.
CHUNK_BYTES = 4 * 1024 * 1024
#: A single row larger than this could not be sent at all.
MAX_ROW_BYTES = MAX_MESSAGE_BYTES // 2
#: Fields of a refused ``tasks[i]`` that come from the row itself; a refusal of any other
#: field (priority, timeout, labels: the command's options) would refuse every row.
ROW_FIELDS = frozenset({"type", "payload", "idempotency_key"})
_ITEM_ERROR = re.compile(r"tasks\[(\d+)\]\.([A-Za-z_]+)[^:]*: (.*)", re.DOTALL)


def default_batch_id(path: Path) -> str:
    """The input file's name without its extension, made a valid batch id
    (``orders 2024.csv`` -> ``orders-2024``)."""
    text = re.sub(r"[^A-Za-z0-9_.\-/]", "-", path.stem).lstrip("_.-/")[:128]
    return text or "batch"


def idempotency_key(batch_id: str, task_id: str) -> str:
    """``batch:<batch id>:<task_id>``; batch ids hold no ``:``, so keys never collide."""
    return f"batch:{batch_id}:{task_id}"


@dataclass(frozen=True)
class ItemError:
    """The scheduler's refusal of one task of a batch: ``tasks[3].payload: …``."""

    index: int
    field: str
    problem: str


def item_error(details: str) -> ItemError | None:
    """The refused item of an ``INVALID_ARGUMENT`` of ``BatchCreateTasks``, if it names one."""
    match = _ITEM_ERROR.fullmatch(details.strip())
    if match is None:
        return None
    return ItemError(int(match.group(1)), match.group(2), match.group(3))


def row_refusal(error: ItemError, task_type: str) -> tuple[str, str]:
    """The status and error_info of a row the scheduler refused."""
    if error.field == "type" and "unknown task type" in error.problem:
        return UNSUPPORTED, unsupported_error(task_type)
    if error.field == "idempotency_key":
        # The key is made from the task_id; the user never wrote one.
        return INVALID, f"task_id: too long for its idempotency key ({error.problem})"
    return INVALID, f"{error.field}: {error.problem}"


class Display(Protocol):
    """How a run shows its progress while it goes."""

    def update(self, *, submitted: int, finished: int, submitting: bool) -> None: ...

    def close(self) -> None: ...


class NoDisplay:
    """Not at a terminal: nothing until the summary."""

    def update(self, *, submitted: int, finished: int, submitting: bool) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressBar:
    """A rich progress bar: finished of submitted tasks, the elapsed time."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task("submitting", total=None)
        self._progress.start()

    def update(self, *, submitted: int, finished: int, submitting: bool) -> None:
        description = f"submitting ({submitted} sent)" if submitting else "waiting"
        self._progress.update(
            self._task, description=description, total=submitted, completed=finished
        )

    def close(self) -> None:
        self._progress.stop()


class BatchRun:
    """The state of one run: a :class:`RowState` per input row, in input order."""

    def __init__(
        self,
        client: AsyncClient,
        batch_id: str,
        *,
        task_options: dict[str, Any],
        chunk_size: int,
        display: Display,
    ) -> None:
        self.client = client
        self.batch_id = batch_id
        self.rows: list[RowState] = []
        self._task_options = task_options
        self._chunk_size = chunk_size
        self._display = display
        self._index: dict[str, int] = {}  # scheduler task id -> row
        #: The highest revision in the first answer: the watch starts there (see ``wait``).
        self._since: int | None = None
        self._submitted = 0
        self._finished = 0
        self._submitting = True
        self._all_finished = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {BATCH_LABEL: self.batch_id}

    @property
    def unfinished(self) -> int:
        return self._submitted - self._finished

    # -- submitting ----------------------------------------------------------------------------

    async def submit(self, rows: Iterable[InputRow]) -> None:
        """Check, then send every row; answers and watch events update the rows."""
        known: set[str] | None
        try:
            known = {task_type.name for task_type in await all_task_types(self.client)}
        except PermissionDenied:
            known = None  # the scheduler checks each type itself

        chunk: list[tuple[int, task_service_pb2.CreateTaskRequest]] = []
        size = 0
        for row in rows:
            index = len(self.rows)
            self.rows.append(RowState(row.task_id, row.task_type))
            request = self._request(index, row, known)
            if request is None:
                continue
            length = request.ByteSize()
            if chunk and (len(chunk) >= self._chunk_size or size + length > CHUNK_BYTES):
                await self._send(chunk)
                chunk, size = [], 0
            chunk.append((index, request))
            size += length
        if chunk:
            await self._send(chunk)
        self._submitting = False
        self._show()

    def _request(
        self, index: int, row: InputRow, known: set[str] | None
    ) -> task_service_pb2.CreateTaskRequest | None:
        """The row's request; ``None`` once the row is settled as INVALID or UNSUPPORTED."""
        state = self.rows[index]
        if row.problem:
            state.status, state.error = INVALID, row.problem
            return None
        if known is not None and row.task_type not in known:
            state.status, state.error = UNSUPPORTED, unsupported_error(row.task_type)
            return None
        try:
            request = create_task_request(
                row.task_type,
                row.payload,
                idempotency_key=idempotency_key(self.batch_id, row.task_id),
                labels=self.labels,
                **self._task_options,
            )
        except (TypeError, ValueError) as exc:
            state.status, state.error = INVALID, f"payload: {exc}"
            return None
        if request.ByteSize() > MAX_ROW_BYTES:
            state.status = INVALID
            state.error = f"the row's task is {request.ByteSize()} bytes; at most {MAX_ROW_BYTES}"
            return None
        return request

    async def _send(self, chunk: list[tuple[int, task_service_pb2.CreateTaskRequest]]) -> None:
        """One chunk; a row the scheduler refuses is settled and the rest sent again."""
        while chunk:
            try:
                response = await self.client.batch_create_tasks([r for _, r in chunk])
            except InvalidArgument as error:
                refused = item_error(error.details)
                if refused is None or refused.field not in ROW_FIELDS:
                    raise
                if refused.index >= len(chunk):
                    raise
                index, _ = chunk.pop(refused.index)
                state = self.rows[index]
                state.status, state.error = row_refusal(refused, state.task_type)
                continue
            if len(response.tasks) != len(chunk):
                raise OrchestratorError(
                    f"the scheduler answered {len(response.tasks)} tasks for {len(chunk)}"
                )
            for (index, _), task in zip(chunk, response.tasks, strict=True):
                self._answered(index, task)
            if self._since is None:
                self._since = max(task.revision for task in response.tasks)
            self._show()
            return

    def _answered(self, index: int, task: task_pb2.Task) -> None:
        state = self.rows[index]
        if task.type != state.task_type:
            # The key names an earlier task of this batch id made from a different row.
            state.status = INVALID
            state.error = (
                f"task_id '{state.task_id}' was submitted before as a '{task.type}' task "
                f"({task.id}); use another --batch-id to submit it again"
            )
            return
        state.scheduler_id = task.id
        self._index[task.id] = index
        self._submitted += 1
        self._update(index, task)

    # -- following -----------------------------------------------------------------------------

    def _update(self, index: int, task: task_pb2.Task) -> None:
        state = self.rows[index]
        if task.revision < state.revision:
            return
        was_final = state.final
        state.revision = task.revision
        state.status = state_name(task.state)
        state.error = task.error
        succeeded = task.state == task_pb2.TASK_STATE_SUCCEEDED
        state.result = dict_from_struct(task.result) if succeeded else None
        self._count(was_final, task.state in TERMINAL_STATES)

    def _deleted(self, index: int) -> None:
        state = self.rows[index]
        if state.final:
            return  # deleted after it finished: its outcome stands
        state.status = CANCELLED
        state.error = f"task {state.scheduler_id} was deleted before it finished"
        self._count(False, True)

    def _count(self, was_final: bool, is_final: bool) -> None:
        self._finished += int(is_final) - int(was_final)
        self._show()

    def _show(self) -> None:
        if not self._submitting and self.unfinished == 0:
            self._all_finished.set()
        self._display.update(
            submitted=self._submitted, finished=self._finished, submitting=self._submitting
        )

    def _event(self, event: task_service_pb2.TaskEvent) -> None:
        index = self._index.get(event.task.id)
        if event.type == task_service_pb2.TASK_EVENT_TYPE_DELETED:
            if index is not None:
                self._deleted(index)
            return
        if index is not None:  # else a task of the label made from no row of this file
            self._update(index, event.task)

    async def _follow(self, since: int) -> None:
        """Apply the label's changes after ``since`` until cancelled; reopen a broken watch.

        Events arrive in revision order, and the tasks of one call share a revision, so a
        watch reopened from the last revision received minus one misses nothing (and
        repeats a few events, which change nothing).
        """
        policy = self.client.retry_policy
        failures = 0
        while True:
            try:
                async with _closing(
                    self.client.watch_tasks(
                        labels=self.labels, since_revision=since, view=task_pb2.TASK_VIEW_FULL
                    )
                ) as events:
                    async for event in events:
                        failures = 0
                        since = max(since, event.revision - 1)
                        self._event(event)
                error: OrchestratorError = WatchEnded("the scheduler ended the watch")
            except (Unavailable, ResourceExhausted) as exc:
                error = exc
            if failures >= policy.retries:
                raise error
            await asyncio.sleep(policy.delay(failures))
            failures += 1

    async def wait(self, deadline: float | None) -> tuple[bool, OrchestratorError | None]:
        """Until every submitted task finished, or ``deadline`` (``time.monotonic()``).

        Answers whether it timed out, and the error that ended the watch if one did.

        The watch starts from the first answer's highest revision: every change after that
        answer has a higher revision, so none is missed, and the answers gave each task's
        state up to then. It opens only now, after the last answer, so every task it reports
        is already known (nothing to hold for later), and not at all when every task has
        finished already (a re-run of a finished batch).
        """
        if self.unfinished == 0 or self._since is None:
            return False, None
        watch = self._watch = asyncio.create_task(self._follow(self._since))
        finished = asyncio.create_task(self._all_finished.wait())
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        await asyncio.wait({finished, watch}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finished.cancel()
        error: OrchestratorError | None = None
        if watch.done() and not watch.cancelled():
            exc = watch.exception()
            if isinstance(exc, OrchestratorError):
                error = exc
            elif exc is not None:
                raise exc
        await self._stop_watch()
        if self.unfinished:
            try:
                await self._settle()
            except OrchestratorError as exc:
                error = error or exc
        if not self.unfinished:
            return False, None  # the pass settled what the watch missed: nothing is lost
        return error is None, error

    async def _settle(self) -> None:
        """One pass over the label's tasks: whatever finished unseen is counted now."""
        async for task in self.client.iter_tasks(
            labels=self.labels, page_size=MAX_PAGE_SIZE, view=task_pb2.TASK_VIEW_FULL
        ):
            index = self._index.get(task.id)
            if index is not None:
                self._update(index, task)

    async def _stop_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and not watch.done():
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def close(self) -> None:
        await self._stop_watch()
        self._display.close()


def write_results_file(path: Path, rows: list[RowState]) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, renamed into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8", newline="") as stream:
            write_results(stream, rows)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def _input_errors(source: Path) -> Iterator[None]:
    """An input that cannot be read as a batch is a usage error (exit 2), wherever the
    reading stops: at the header or halfway (rows sent until then are kept by the scheduler
    and answered again, by their keys, once the file is fixed)."""
    try:
        yield
    except InputError as exc:
        raise UsageError(f"{source}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def _check_args(args: argparse.Namespace) -> tuple[Path, Path, str]:
    source, target = Path(args.input), Path(args.output)
    if not source.is_file():
        raise UsageError(f"no such input file: {source}")
    if not target.parent.is_dir():
        raise UsageError(f"the output's directory does not exist: {target.parent}")
    if target.resolve() == source.resolve():
        raise UsageError("the output would overwrite the input")
    batch_id = args.batch_id or default_batch_id(source)
    if not _BATCH_ID.fullmatch(batch_id):
        raise UsageError(
            f"invalid --batch-id {batch_id!r}: up to 128 letters, digits and _ . - /, "
            "starting with a letter or digit"
        )
    return source, target, batch_id


async def batch(ctx: Context, args: argparse.Namespace) -> int:
    """Run the batch; exit 0 if every row SUCCEEDED, 1 if not, 3 on ``--timeout-all``."""
    source, target, batch_id = _check_args(args)
    deadline = None if args.timeout_all is None else time.monotonic() + args.timeout_all
    # The csv module refuses cells over 128 KiB; a payload may be larger (the scheduler says
    # how large: its refusal names the row). Beyond this a row could not be sent anyway.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_ROW_BYTES))
    try:
        # utf-8-sig: a spreadsheet's byte order mark is not part of the first column's name.
        stream = source.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    with stream, _input_errors(source):
        rows = read_rows(stream)
        display: Display = NoDisplay()
        if ctx.out.draws_progress:
            display = ProgressBar(ctx.out.err_console)
        run = BatchRun(
            ctx.client,
            batch_id,
            task_options={
                "priority": args.priority,
                "max_attempts": args.max_attempts,
                "timeout": args.task_timeout,
            },
            chunk_size=args.chunk_size,
            display=display,
        )
        try:
            await run.submit(rows)
            timed_out, error = await run.wait(deadline)
        finally:
            await run.close()
    try:
        write_results_file(target, run.rows)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    counts = status_counts(run.rows)
    ctx.out.note(f"batch {batch_id}: {summary_text(counts)}; results in {target}")
    if ctx.out.json_mode:
        ctx.out.write_json(
            {
                "batch_id": batch_id,
                "input": str(source),
                "output": str(target),
                "rows": len(run.rows),
                "statuses": dict(sorted(counts.items())),
            }
        )
    if error is not None:
        raise error
    if timed_out:
        assert args.timeout_all is not None
        raise DeadlineExceeded(
            f"{run.unfinished} task(s) of batch {batch_id} did not finish within "
            f"{format_duration(args.timeout_all)}; {target} has their current state"
        )
    every_row_succeeded = counts.get("SUCCEEDED", 0) == len(run.rows)
    return ExitCode.OK if every_row_succeeded else ExitCode.TASK_UNSUCCESSFUL
