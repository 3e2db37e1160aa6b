"""The writer's connection: statements run inline on the event loop; waits go to a thread.

A write transaction is dozens of short statements (a claim round, a batch of creates, the
results of a commit), each well under a millisecond. Through aiosqlite every one of them
is a round trip to its thread, ~50-65 µs of the event loop's time in queues, futures and
wake-ups, which under load was a quarter of the scheduler's CPU. Here those statements run
directly on the loop (SQLite releases the GIL while it works), and only the steps that can
*wait* go to the connection's own thread: ``BEGIN IMMEDIATE`` (another process may hold the
lock), ``COMMIT`` (the fsync) and ``ROLLBACK``. Once ``BEGIN IMMEDIATE`` has succeeded this
connection holds the write lock, so no statement inside the transaction waits for another
process.

The API is the slice of aiosqlite's that the write handlers use (``execute`` awaited or
used as an async context manager, ``executemany``, cursors with ``fetchone``/``fetchall``),
so the handlers read the same either way. One writer task uses the connection at a time;
the thread and the loop never touch it at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from types import TracebackType
from typing import Any

#: How long a writer waits for another process's write lock (every connection's setting).
BUSY_TIMEOUT_MS = 30_000


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    def close(self) -> None:
        self._cursor.close()


class _Statement:
    """``await conn.execute(...)`` or ``async with conn.execute(...) as cursor``."""

    def __init__(self, run: Callable[[], sqlite3.Cursor]) -> None:
        self._run = run
        self._cursor: InlineCursor | None = None

    async def _open(self) -> InlineCursor:
        return InlineCursor(self._run())

    def __await__(self) -> Generator[Any, None, InlineCursor]:
        return self._open().__await__()

    async def __aenter__(self) -> InlineCursor:
        self._cursor = await self._open()
        return self._cursor

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._cursor is not None:
            self._cursor.close()


class InlineConnection:
    def __init__(self, raw: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self._raw = raw
        self._thread = thread

    @classmethod
    async def open(cls, path: str, pragmas: Iterable[str]) -> InlineConnection:
        thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        loop = asyncio.get_running_loop()

        def connect() -> sqlite3.Connection:
            # isolation_level=None: the writer issues BEGIN/COMMIT itself.
            raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                for pragma in pragmas:
                    raw.execute(pragma)
            except BaseException:
                raw.close()
                raise
            return raw

        try:
            raw = await loop.run_in_executor(thread, connect)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(raw, thread)

    def execute(self, sql: str, parameters: Any = ()) -> _Statement:
        return _Statement(partial(self._raw.execute, sql, parameters))

    def executemany(self, sql: str, parameters: Iterable[Any]) -> _Statement:
        return _Statement(partial(self._raw.executemany, sql, parameters))

    async def execute_waiting(self, sql: str) -> None:
        """A statement that may wait (for the lock, for the disk): run in the thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._raw.execute, sql)

    async def begin_immediate(self) -> None:
        """``BEGIN IMMEDIATE``: inline when the lock is free, else waited for in the thread.

        The scheduler processes order their writes with a lock of their own first (see
        :mod:`.write_lock`), so the database's lock is nearly always free here and the
        thread hop (a fifth of a millisecond on an idle loop, more on a busy one) is saved;
        only another program writing the file makes this wait.
        """
        self._raw.execute("PRAGMA busy_timeout = 0")
        try:
            self._raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                self._raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                raise
            self._raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await self.execute_waiting("BEGIN IMMEDIATE")
        else:
            self._raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    @property
    def in_transaction(self) -> bool:
        return self._raw.in_transaction

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._raw.close)
        finally:
            self._thread.shutdown(wait=False)
