"""A cross-process write lock for the scheduler processes sharing one SQLite file.

SQLite lets one writer in at a time and makes the others wait in its busy handler, which
sleeps in growing steps (up to 100 ms) between tries; under steady contention from several
processes a writer can lose the race for seconds — long enough for heartbeats to miss and
leases to expire. Taking this lock first (``flock`` on ``<database>-writer.lock``) means the
kernel wakes a waiting process the moment the lock is free, so write latency stays the sum
of the transactions ahead of it. SQLite's own locking still guards correctness; this only
orders the waiting.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from pathlib import Path


class WriteLock:
    def __init__(self, database: str) -> None:
        self._path = None if database == ":memory:" else Path(database + "-writer.lock")
        self._fd: int | None = None
        #: Seconds spent waiting for the lock by the last acquire (for metrics and logs).
        self.last_wait = 0.0

    def open(self) -> None:
        if self._path is not None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def acquire(self) -> None:
        if self._fd is None:
            return
        started = time.monotonic()
        try:  # the common case, uncontended: no thread hop
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await asyncio.to_thread(fcntl.flock, self._fd, fcntl.LOCK_EX)
        self.last_wait = time.monotonic() - started

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
