"""Group commit on PostgreSQL: many callers' writes in one transaction, like the SQLite
store's writer, with the same contract for its handlers.

A kind of write (``PgWriteKind``) has a handler that takes a batch of arguments and answers
one result each; each kind runs in a savepoint, so one caller's bad argument fails only
that caller. ``last`` kinds (claims) run after the others, and see what they wrote.

Revisions across replicas: every write transaction first locks the ``revision`` row of
``meta`` (``FOR UPDATE``) and takes the next number. The lock is held until commit, so the
write transactions of all replicas commit one at a time, in revision order, and a reader
of the change feed can never see revision N+1 before N is committed: the guarantee the
change feed's cursor needs. The commit also sends ``NOTIFY orchestrator_commits`` with the
revision, which is how other replicas learn of it without polling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg

from ...domain.clock import Clock
from ...domain.errors import SchedulerError, Unavailable
from ...domain.model import Micros
from ..sqlite.counts import CountChanges, Shape

log = logging.getLogger(__name__)

A = TypeVar("A")
R = TypeVar("R")

#: The channel of commit notifications (payload: the committed revision).
COMMIT_CHANNEL = "orchestrator_commits"

_COUNTS_UPSERT = """
INSERT INTO task_counts (type, state, tasks, retries, exhausted) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (type, state) DO UPDATE SET
    tasks = task_counts.tasks + excluded.tasks,
    retries = task_counts.retries + excluded.retries,
    exhausted = task_counts.exhausted + excluded.exhausted
"""


class PgCountChanges(CountChanges):
    """The SQLite store's count changes (same arithmetic, same snapshot and restore),
    written with PostgreSQL's statement."""

    def add(self, type_: str, state: int, attempts: int, max_attempts: int, sign: int) -> None:
        self._add(Shape(type_, state, attempts, max_attempts), sign)

    async def save(self, conn: asyncpg.Connection) -> None:
        rows = self.rows()
        if rows:
            await conn.executemany(_COUNTS_UPSERT, rows)


class PgTx:
    """One write transaction as handlers see it: the connection, its time, its revision."""

    def __init__(self, conn: asyncpg.Connection, now: Micros, revision: int) -> None:
        self.conn = conn
        self.now = now
        self._revision = revision
        #: Whether a handler took the revision, i.e. changed tasks that watchers see.
        self.revision_used = False
        self.counts = PgCountChanges()

    @property
    def revision(self) -> int:
        """Every task row this transaction changes takes this revision. Taking it marks the
        transaction as one that moves the change feed: only then is the counter written
        and the commit announced (an empty claim or a heartbeat moves nothing)."""
        self.revision_used = True
        return self._revision


Handler = Callable[[PgTx, Sequence[A]], Awaitable[Sequence[R]]]


@dataclass(frozen=True)
class PgWriteKind(Generic[A, R]):
    """A kind of write (see the SQLite store's ``WriteKind``). A ``quiet`` kind's commit
    is announced to the other replicas only if it changed tasks (took the revision): an
    empty claim, a heartbeat or a worker row must not wake every replica's dispatcher,
    whose own empty claim would wake this one back, and so on for ever."""

    name: str
    handler: Handler[A, R]
    last: bool = False
    quiet: bool = False


@dataclass
class _Item:
    kind: PgWriteKind[Any, Any]
    argument: Any
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def storage_error(exc: BaseException) -> SchedulerError:
    """A failure of the server or the connection: UNAVAILABLE, worth a retry."""
    return Unavailable(f"the database cannot be written right now ({exc}); retry")


class PgGroupCommitWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        on_commit: Callable[[int, bool], None],
        max_batch: int = 2000,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: list[_Item] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="postgres-group-commit")

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def submit(self, kind: PgWriteKind[A, R], argument: A) -> R:
        if self._closed:
            raise RuntimeError("the store is closed")
        if self._task is None or self._task.done():
            raise RuntimeError("the store's writer is not running")
        item = _Item(kind, argument)
        self._queue.append(item)
        self._wakeup.set()
        result: R = await item.future
        return result

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._commit_batch(batch)
            if self._closed:
                return

    async def _commit_batch(self, batch: list[_Item]) -> None:
        results: dict[int, Any] = {}
        failures: dict[int, BaseException] = {}
        try:
            async with self._pool.acquire() as conn:
                transaction = conn.transaction()
                await transaction.start()
                try:
                    row = await conn.fetchrow(
                        "SELECT value FROM meta WHERE key = 'revision' FOR UPDATE"
                    )
                    assert row is not None
                    tx = PgTx(conn, self._clock.now(), int(row["value"]) + 1)
                    for kind, items in _group_by_kind(batch):
                        await self._apply(tx, kind, items, results, failures)
                    await tx.counts.save(conn)
                    moved = tx.revision_used
                    if moved:
                        await conn.execute(
                            "UPDATE meta SET value = $1 WHERE key = 'revision'", tx.revision
                        )
                    loud = any(not item.kind.quiet and id(item) in results for item in batch)
                    if moved or loud:  # delivered to every replica when this commits
                        await conn.execute(
                            "SELECT pg_notify($1, $2)", COMMIT_CHANNEL, str(tx.revision)
                        )
                except BaseException:
                    await transaction.rollback()
                    raise
                await transaction.commit()
        except BaseException as exc:  # the whole transaction is lost: fail every caller
            if isinstance(exc, (asyncpg.PostgresError, OSError, asyncpg.InterfaceError)):
                log.error("write transaction failed: %s", exc)
                exc = storage_error(exc)
            else:
                log.exception("write transaction failed")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if moved:
            ran_last = any(item.kind.last and id(item) in results for item in batch)
            self._on_commit(tx.revision, ran_last)
        for item in batch:
            if item.future.done():  # its caller was cancelled while it waited
                continue
            key = id(item)
            if key in failures:
                item.future.set_exception(failures[key])
            else:
                item.future.set_result(results[key])

    async def _apply(
        self,
        tx: PgTx,
        kind: PgWriteKind[Any, Any],
        items: list[_Item],
        results: dict[int, Any],
        failures: dict[int, BaseException],
    ) -> None:
        """Run one kind's handler on its arguments; isolate a failing argument.

        A PostgreSQL error is not only an argument's fault when it aborts the transaction;
        the savepoint makes it one again, so it is isolated like a domain error.
        """
        try:
            answers = await self._in_savepoint(tx, kind, [i.argument for i in items])
            for item, answer in zip(items, answers, strict=True):
                results[id(item)] = answer
            return
        except (OSError, asyncpg.InterfaceError):
            raise  # the connection is gone: the transaction as a whole fails
        except Exception as exc:
            if len(items) == 1:
                failures[id(items[0])] = exc
                return
        for item in items:  # isolate the failing argument(s)
            try:
                (answer,) = await self._in_savepoint(tx, kind, [item.argument])
                results[id(item)] = answer
            except (OSError, asyncpg.InterfaceError):
                raise
            except Exception as exc:
                failures[id(item)] = exc

    async def _in_savepoint(
        self, tx: PgTx, kind: PgWriteKind[Any, Any], args: list[Any]
    ) -> Sequence[Any]:
        counts = tx.counts.snapshot()
        try:
            async with tx.conn.transaction():  # nested: a savepoint
                return await kind.handler(tx, args)
        except BaseException:
            tx.counts.restore(counts)
            raise


def _group_by_kind(batch: list[_Item]) -> list[tuple[PgWriteKind[Any, Any], list[_Item]]]:
    """The batch by kind, in order of first arrival, ``last`` kinds at the end."""
    groups: dict[str, tuple[PgWriteKind[Any, Any], list[_Item]]] = {}
    for item in batch:
        groups.setdefault(item.kind.name, (item.kind, []))[1].append(item)
    return sorted(groups.values(), key=lambda group: group[0].last)
