"""Which store a ``--database`` value names: SQLite for a path or ``sqlite:///path``, the
PostgreSQL store for ``postgresql://`` (or ``postgres://``) URLs.

``SchedulerApp`` builds its store with :func:`open_store`, from a :class:`StoreSettings`
made of its flags.

asyncpg is the optional ``postgres`` extra, so the PostgreSQL store is imported only when
a URL names it: an SQLite-only install never needs asyncpg.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from ..domain.clock import Clock, SystemClock
from ..domain.model import MICROS_PER_SECOND, Micros
from .base import TaskStore, sqlite_path
from .sqlite.store import SqliteOptions, SqliteTaskStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class StoreSettings:
    """The store options the scheduler sets, for either backend. Those of one backend only
    are named after it; the other ignores them."""

    clock: Clock = field(default_factory=SystemClock)
    #: Waiting this long raises a task's effective priority by one point.
    priority_aging: Micros = 1 * MICROS_PER_SECOND
    #: How long an idempotency key keeps returning its first task.
    idempotency_retention: Micros = 24 * 3600 * MICROS_PER_SECOND
    #: Schedule slots missed by at most this long still fire (late).
    schedule_grace: Micros = 60 * MICROS_PER_SECOND
    #: SQLite's ``PRAGMA synchronous`` (``--sqlite-synchronous``).
    sqlite_synchronous: str = "FULL"
    #: SQLite test hook (``crash_at`` of ``SqliteOptions``).
    sqlite_crash_at: str | None = None
    #: Connections each scheduler keeps to the PostgreSQL server.
    postgres_pool_size: int = 10


def is_postgres_url(database_url: str) -> bool:
    return database_url.startswith(POSTGRES_SCHEMES)


def redacted(database_url: str) -> str:
    """``database_url`` fit for a log line: a PostgreSQL URL may carry a password."""
    if not is_postgres_url(database_url):
        return database_url
    parts = urlsplit(database_url)
    if parts.password is None:
        return database_url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_store(database_url: str, settings: StoreSettings | None = None) -> TaskStore:
    """The store ``database_url`` names, built but not yet connected: call ``open()``.

    Raises ValueError, naming the flag, for a value that is neither (``sqlite_path``).
    """
    settings = settings or StoreSettings()
    if is_postgres_url(database_url):
        from .postgres.store import PostgresOptions, PostgresTaskStore

        return PostgresTaskStore(
            database_url,
            PostgresOptions(
                clock=settings.clock,
                pool_size=settings.postgres_pool_size,
                priority_aging=settings.priority_aging,
                idempotency_retention=settings.idempotency_retention,
                schedule_grace=settings.schedule_grace,
            ),
        )
    return SqliteTaskStore(
        sqlite_path(database_url),
        SqliteOptions(
            synchronous=settings.sqlite_synchronous,
            priority_aging=settings.priority_aging,
            clock=settings.clock,
            idempotency_retention=settings.idempotency_retention,
            schedule_grace=settings.schedule_grace,
            crash_at=settings.sqlite_crash_at,
        ),
    )
