"""Group commit: many callers' writes in one SQLite transaction, each acknowledged after it.

Callers submit ``(kind, argument)``; a single writer task takes everything queued, opens
one ``BEGIN IMMEDIATE`` transaction, hands each kind its arguments *together* (so 300
creates become one ``executemany``), commits once (one fsync under ``synchronous=FULL``),
and only then resolves each caller's future. While a transaction runs, new submissions
queue up and form the next batch, so batches grow exactly when load does.

A kind whose handler fails is rolled back to its savepoint and, when it held several
arguments, retried one argument at a time, so one bad request never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ...domain.clock import Clock
from ...domain.model import Micros
from .counts import CountChanges
from .errors import storage_error
from .inline import InlineConnection
from .write_lock import WriteLock

log = logging.getLogger(__name__)

#: The exit status of the crash-test hook (``--crash-at``).
CRASH_EXIT_CODE = 70

A = TypeVar("A")
R = TypeVar("R")


class Tx:
    """One write transaction as the handlers see it: the connection, its time, its revision."""

    def __init__(self, conn: InlineConnection, now: Micros, mono: Micros) -> None:
        self.conn = conn
        self.now = now
        #: The monotonic clock at the start of the transaction (lease deadlines).
        self.mono = mono
        #: Changes to the per-type task counts, saved with the revision before COMMIT.
        self.counts = CountChanges()
        self._revision: int | None = None

    async def revision(self) -> int:
        """This transaction's revision (the stored counter plus one), read on first use.

        The counter itself is written once, just before COMMIT (:meth:`finish`),
        outside every savepoint: a handler rolled back to its savepoint must not roll the
        counter back under a revision that other rows of this transaction already carry.
        """
        if self._revision is None:
            async with self.conn.execute("SELECT value FROM meta WHERE key = 'revision'") as cur:
                row = await cur.fetchone()
            assert row is not None
            self._revision = int(row[0]) + 1
        return self._revision

    async def finish(self) -> None:
        """Write what the handlers accumulated: the revision counter and the task counts."""
        if self._revision is not None:
            await self.conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'revision'", (self._revision,)
            )
        await self.counts.save(self.conn)

    @property
    def bumped_revision(self) -> int | None:
        return self._revision


Handler = Callable[[Tx, Sequence[A]], Awaitable[Sequence[R]]]


@dataclass(frozen=True)
class WriteKind(Generic[A, R]):
    """A kind of write: its handler takes a batch of arguments, answers one result each.

    A ``last`` kind runs after every other kind in its transaction. Claims are: they then
    see the tasks the same transaction created and the slots (of groups, of concurrency
    limits) its ends freed, so a task can be created and leased, or a worker's result
    taken and its next task leased, in one commit rather than two.
    """

    name: str
    handler: Handler[A, R]
    last: bool = False


@dataclass
class _Item:
    kind: WriteKind[Any, Any]
    argument: Any
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommitWriter:
    def __init__(
        self,
        conn: InlineConnection,
        clock: Clock,
        on_commit: Callable[[int, bool], None],
        lock: WriteLock,
        max_batch: int = 2000,
        crash_at: str | None = None,
    ) -> None:
        self._crash_at = crash_at
        self._lock = lock
        self._conn = conn
        self._clock = clock
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: list[_Item] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sqlite-group-commit")

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def submit(self, kind: WriteKind[A, R], argument: A) -> R:
        if self._closed:
            raise RuntimeError("the store is closed")
        if self._task is None or self._task.done():
            # Never queue behind a writer that is not there: the caller would wait forever.
            raise RuntimeError("the store's writer is not running")
        item = _Item(kind, argument)
        self._queue.append(item)
        self._wakeup.set()
        # Not shielded: a caller cancelled while it waits cancels only its future; the
        # write itself stays queued and is committed with its batch all the same.
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
        try:
            await self._commit_batch_locked(batch)
        finally:
            self._lock.release()

    async def _commit_batch_locked(self, batch: list[_Item]) -> None:
        results: dict[int, Any] = {}
        failures: dict[int, BaseException] = {}
        await self._lock.acquire()
        if self._lock.last_wait > 0.5:
            log.warning(
                "waited %.2fs for the database write lock (other scheduler processes)",
                self._lock.last_wait,
            )
        kinds = {item.kind.name for item in batch}
        try:
            await self._conn.begin_immediate()
            tx = Tx(self._conn, self._clock.now(), self._clock.monotonic())
            for kind, items in _group_by_kind(batch):
                await self._apply(tx, kind, items, results, failures)
            await tx.finish()
            self._crash_if("before-commit", kinds)
            await self._conn.execute_waiting("COMMIT")
            self._crash_if("after-commit", kinds)
        except BaseException as exc:  # the whole transaction is lost: fail every caller
            if isinstance(exc, sqlite3.Error):
                log.error("write transaction failed: %s", exc)
                exc = storage_error(exc)
            else:
                log.exception("write transaction failed")
            if self._conn.in_transaction:
                try:
                    await self._conn.execute_waiting("ROLLBACK")
                except Exception:  # pragma: no cover - the connection itself is broken
                    log.exception("rollback failed")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if tx.bumped_revision is not None:
            ran_last = any(
                item.kind.last and id(item) in results for item in batch
            )  # a ``last`` kind that failed was rolled back: it saw nothing
            self._on_commit(tx.bumped_revision, ran_last)
        for item in batch:
            if item.future.done():  # its caller was cancelled while it waited
                continue
            key = id(item)
            if key in failures:
                item.future.set_exception(failures[key])
            else:
                item.future.set_result(results[key])

    def _crash_if(self, moment: str, kinds: set[str]) -> None:
        """The crash-test hook (``--crash-at kind:moment``): die right here, like kill -9."""
        if self._crash_at is not None and any(f"{k}:{moment}" == self._crash_at for k in kinds):
            log.warning("crash hook %s: exiting now", self._crash_at)
            os._exit(CRASH_EXIT_CODE)

    async def _apply(
        self,
        tx: Tx,
        kind: WriteKind[Any, Any],
        items: list[_Item],
        results: dict[int, Any],
        failures: dict[int, BaseException],
    ) -> None:
        """Run one kind's handler on its arguments; isolate a failing argument.

        An SQLite error (disk full, I/O) is not an argument's fault: it fails the whole
        transaction (raised on), since SQLite may already have rolled it back.
        """
        try:
            answers = await self._in_savepoint(tx, kind, [i.argument for i in items])
            for item, answer in zip(items, answers, strict=True):
                results[id(item)] = answer
            return
        except sqlite3.Error:
            raise
        except Exception as exc:
            if len(items) == 1:
                failures[id(items[0])] = exc
                return
        for item in items:  # isolate the failing argument(s)
            try:
                (answer,) = await self._in_savepoint(tx, kind, [item.argument])
                results[id(item)] = answer
            except sqlite3.Error:
                raise
            except Exception as exc:
                failures[id(item)] = exc

    async def _in_savepoint(
        self, tx: Tx, kind: WriteKind[Any, Any], args: list[Any]
    ) -> Sequence[Any]:
        await self._conn.execute("SAVEPOINT kind")
        counts = tx.counts.snapshot()
        try:
            answers = await kind.handler(tx, args)
        except BaseException as exc:
            tx.counts.restore(counts)
            if isinstance(exc, sqlite3.Error):
                raise  # the transaction as a whole fails (see _apply)
            await self._conn.execute("ROLLBACK TO kind")
            await self._conn.execute("RELEASE kind")
            raise
        await self._conn.execute("RELEASE kind")
        return answers


def _group_by_kind(batch: list[_Item]) -> list[tuple[WriteKind[Any, Any], list[_Item]]]:
    """The batch by kind, in order of first arrival, ``last`` kinds at the end."""
    groups: dict[str, tuple[WriteKind[Any, Any], list[_Item]]] = {}
    for item in batch:
        groups.setdefault(item.kind.name, (item.kind, []))[1].append(item)
    return sorted(groups.values(), key=lambda group: group[0].last)
