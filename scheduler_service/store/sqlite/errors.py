"""SQLite errors as the domain's: what a caller can do about them, not what SQLite said."""

from __future__ import annotations

import sqlite3

from ...domain.errors import ResourceExhausted, SchedulerError, Unavailable
from ..errors import DatabaseUnusable

__all__ = ["DatabaseUnusable", "storage_error"]

SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL = 5, 6, 13


def storage_error(exc: sqlite3.Error) -> SchedulerError:
    """A full disk is RESOURCE_EXHAUSTED (it lasts until someone frees space); anything
    else that stops a write (locked, read-only, I/O) is UNAVAILABLE, worth a retry."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == SQLITE_FULL:
        return ResourceExhausted(
            "the database is full (no disk space or file size limit): writes fail until "
            "space is freed; reads still work"
        )
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return Unavailable("the database is locked by another process; retry")
    return Unavailable(f"the database cannot be written right now ({exc}); retry")
