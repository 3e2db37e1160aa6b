"""Migrating a database's schema on its own, without starting a scheduler
(``orchestrator-scheduler migrate``).

Both stores migrate when they open; this runs the same migrations ahead of time, so an
operator can upgrade the schema in a maintenance step, or prepare a PostgreSQL database
before the first replica starts, and see what was applied.
"""

from __future__ import annotations

import sqlite3

from .base import sqlite_path
from .errors import DatabaseUnusable
from .factory import is_postgres_url, redacted

#: Seconds to wait for a PostgreSQL connection before giving up.
CONNECT_TIMEOUT = 10.0


async def migrate_database(database_url: str) -> list[str]:
    """Apply the migrations ``database_url`` lacks; answers their file names, in order
    (empty: the schema was current).

    Raises DatabaseUnusable, naming the database without its password, when it cannot be
    reached or migrated; ValueError for a value that is neither an SQLite path nor a
    PostgreSQL URL.
    """
    if is_postgres_url(database_url):
        return await _migrate_postgres(database_url)
    return await _migrate_sqlite(sqlite_path(database_url))


async def _migrate_sqlite(path: str) -> list[str]:
    from .sqlite.connection import connect, migrate, migrations

    try:
        conn = await connect(path)
        try:
            async with conn.execute("PRAGMA user_version") as cursor:
                row = await cursor.fetchone()
            before = int(row[0]) if row else 0
            await migrate(conn)
        finally:
            await conn.close()
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise DatabaseUnusable(f"cannot migrate the SQLite database {path!r}: {exc}") from exc
    return [name for version, name, _ in migrations() if version > before]


async def _migrate_postgres(url: str) -> list[str]:
    import asyncpg

    from .postgres.connection import migrate

    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
        try:
            return await migrate(conn)
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise DatabaseUnusable(
            f"cannot migrate the PostgreSQL database {shown(url)}: {exc}"
        ) from exc


def shown(url: str) -> str:
    """``url`` without its password, even when it is too malformed to parse: the host part
    only, then."""
    try:
        return redacted(url)
    except ValueError:
        return repr(url.split("@")[-1])
