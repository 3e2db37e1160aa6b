"""Copying a stopped SQLite database into an empty PostgreSQL one
(``orchestrator-scheduler copy``): the way from one scheduler on a file to replicas on a
server.

Every row that is the orchestrator's state moves as it is: task ids, revisions, attempts
and their history, labels, the per-type counts, schedules, task types and their limits,
concurrency keys, deletion records, the meta revision counter and ``history_floor``, and the
tasks' idempotency keys. So a WatchTasks resumed from a revision taken before the move still
answers, and a repeated create with a key still returns its first task.

What does not move, and why:

- ``workers``: the streams connected to the old schedulers; workers reconnect.
- ``rate_starts``: a one-minute sliding window of starts; it refills in a minute.
- ``settings.boot_id``: SQLite's monotonic lease clock belongs to the host's boot.

Leases of RUNNING tasks are on SQLite's monotonic clock (microseconds since the host
booted); PostgreSQL's are on the database server's wall clock, so they cannot carry over.
By default the copy refuses while any task is RUNNING (stop the schedulers and let their
workers finish: a scheduler drains on SIGTERM). With ``expire_leases`` the copied RUNNING
tasks get an expired lease, as SQLite does after a reboot (boot.py): the first scheduler on
PostgreSQL takes them back as lost-worker attempts and they run again.

The target must be empty (no tasks, deletion records or schedules, revision 0): the copy
keeps the source's revisions and ids, which would clash with another history. It is
migrated first and the rows go in with COPY, in batches, in one transaction: a failed copy
leaves it as it was. ``tasks.seq`` (PostgreSQL's stand-in for SQLite's rowid, the order of
group waiting, cache followers) takes the rowid, and its identity sequence continues after
the highest one.

The source is opened read-only, in one read transaction (a consistent snapshot), and must
be at the newest SQLite schema (``orchestrator-scheduler migrate --database PATH`` first).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import sqlite_path
from .errors import DatabaseUnusable
from .factory import is_postgres_url
from .schema import CONNECT_TIMEOUT, migrate_database, shown

log = logging.getLogger(__name__)

#: Rows sent per COPY.
BATCH_ROWS = 1000
#: Tables copied, parents before children for the reader's sake (there are no foreign keys).
COPIED_TABLES = (
    "task_types",
    "concurrency_keys",
    "tasks",
    "task_labels",
    "attempts",
    "deleted_tasks",
    "task_counts",
    "schedules",
    "settings",
)
#: Tables left behind (see the module's docstring).
SKIPPED_TABLES = ("workers", "rate_starts")
#: Settings that belong to the SQLite host, not to the data.
SKIPPED_SETTINGS = ("boot_id",)
RUNNING = 3
#: What an expired lease looks like (as boot.py writes it): the reaper's "lost worker",
#: never a timeout.
EXPIRED_LEASE = -1
NO_DEADLINE = 9223372036854775807


class CopyRefused(Exception):
    """The copy cannot go ahead as asked; the message says what to do instead."""


@dataclass
class CopyReport:
    """What was copied: rows per table, the meta values, leases expired."""

    rows: dict[str, int] = field(default_factory=dict)
    meta: dict[str, int] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)
    expired_leases: int = 0


async def copy_sqlite_to_postgres(
    source: str, target: str, *, expire_leases: bool = False
) -> CopyReport:
    """Copy the SQLite database ``source`` (a path or ``sqlite:///path``) into the empty
    PostgreSQL database ``target`` (migrated first).

    Raises CopyRefused when the target is not empty, the source is missing, not at the
    newest schema, or has RUNNING tasks (unless ``expire_leases``); DatabaseUnusable when
    either database cannot be used; ValueError for a value of the wrong kind.
    """
    if is_postgres_url(source):
        raise ValueError(f"--from: {shown(source)} must be an SQLite file, not PostgreSQL")
    if not is_postgres_url(target):
        raise ValueError(f"--to: expected a postgresql:// URL, got {target!r}")
    path = sqlite_path(source)
    reader = _open_source(path)
    try:
        running = _count(reader, "SELECT count(*) FROM tasks WHERE state = ?", (RUNNING,))
        if running and not expire_leases:
            raise CopyRefused(
                f"{running} task(s) are RUNNING in {path!r}: their leases are on SQLite's "
                "clock and cannot move. Stop the schedulers (they drain on SIGTERM) and "
                "copy again, or pass --expire-leases to have them run again on PostgreSQL"
            )
        report = CopyReport(migrations=await migrate_database(target))
        await _copy_into(reader, target, report)
    finally:
        reader.close()
    return report


def _open_source(path: str) -> sqlite3.Connection:
    from .sqlite.connection import migrations

    if not Path(path).is_file():  # connecting would make an empty database
        raise CopyRefused(f"--from: no SQLite database at {path!r}")
    try:
        conn = sqlite3.connect(
            Path(path).resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None
        )
        conn.execute("BEGIN")  # one snapshot for every table
        version = _count(conn, "PRAGMA user_version")
    except sqlite3.Error as exc:
        raise DatabaseUnusable(f"cannot read the SQLite database {path!r}: {exc}") from exc
    newest = migrations()[-1][0]
    if version != newest:
        conn.close()
        raise CopyRefused(
            f"the SQLite database {path!r} is at schema version {version}, not {newest}: "
            f"run `orchestrator-scheduler migrate --database {path}` first"
        )
    return conn


def _count(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


async def _copy_into(reader: sqlite3.Connection, target: str, report: CopyReport) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(target, timeout=CONNECT_TIMEOUT)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise DatabaseUnusable(f"cannot connect to {shown(target)}: {exc}") from exc
    try:
        async with conn.transaction():
            await _refuse_unless_empty(conn, target)
            for table in COPIED_TABLES:
                report.rows[table] = await _copy_table(reader, conn, table, report)
            report.meta = await _copy_meta(reader, conn)
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('tasks', 'seq'),"
                " coalesce(max(seq), 0) + 1, false) FROM tasks"
            )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnusable(f"copy into {shown(target)} failed: {exc}") from exc
    finally:
        await conn.close()
    log.info("copied", extra={"rows": report.rows, "meta": report.meta})


async def _refuse_unless_empty(conn: Any, target: str) -> None:
    """Refuse a target with a history: the copy's revisions and ids would clash with it."""
    found = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM tasks) AS tasks,"
        " (SELECT count(*) FROM deleted_tasks) AS deleted,"
        " (SELECT count(*) FROM schedules) AS schedules,"
        " (SELECT coalesce(max(value), 0) FROM meta WHERE key = 'revision') AS revision"
    )
    if any(found[name] for name in ("tasks", "deleted", "schedules", "revision")):
        raise CopyRefused(
            f"the target {shown(target)} is not empty ({found['tasks']} tasks, "
            f"{found['deleted']} deletion records, {found['schedules']} schedules, revision "
            f"{found['revision']}): copy into a new database (CREATE DATABASE ...)"
        )


async def _copy_table(reader: sqlite3.Connection, conn: Any, table: str, report: CopyReport) -> int:
    source_columns = [row[1] for row in reader.execute(f"PRAGMA table_info({table})")]
    target_types = {
        row["column_name"]: row["data_type"]
        for row in await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1",
            table,
        )
    }
    missing = [name for name in source_columns if name not in target_types]
    if missing:
        raise CopyRefused(f"PostgreSQL's {table} lacks the SQLite columns {missing}")
    columns = (["seq"] if table == "tasks" else []) + source_columns
    select = f"SELECT {'rowid, ' if table == 'tasks' else ''}{', '.join(source_columns)} "
    select += f"FROM {table}"
    if table == "tasks":
        select += " ORDER BY rowid"
    if table == "settings":
        select += f" WHERE key NOT IN ({', '.join('?' for _ in SKIPPED_SETTINGS)})"
    cursor = reader.execute(select, SKIPPED_SETTINGS if table == "settings" else ())
    convert = _converter(columns, target_types, report if table == "tasks" else None)
    copied = 0
    for batch in _batches(cursor):
        records = [convert(row) for row in batch]
        await conn.copy_records_to_table(table, records=records, columns=columns)
        copied += len(records)
    return copied


def _converter(
    columns: list[str], target_types: dict[str, str], tasks_report: CopyReport | None
) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """Per row: SQLite REAL values that happen to be whole come back as ints, PostgreSQL's
    double precision wants floats; and a RUNNING task's lease (tasks only) is expired."""
    floats = [i for i, name in enumerate(columns) if target_types[name] == "double precision"]
    at = {name: i for i, name in enumerate(columns)}

    def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for i in floats:
            if values[i] is not None:
                values[i] = float(values[i])
        if tasks_report is not None and values[at["state"]] == RUNNING:
            values[at["lease_expires_at"]] = EXPIRED_LEASE
            values[at["attempt_deadline"]] = NO_DEADLINE
            tasks_report.expired_leases += 1
        return tuple(values)

    return convert


def _batches(cursor: sqlite3.Cursor) -> Iterator[list[tuple[Any, ...]]]:
    while batch := cursor.fetchmany(BATCH_ROWS):
        yield batch


async def _copy_meta(reader: sqlite3.Connection, conn: Any) -> dict[str, int]:
    """The revision counter and ``history_floor``: each row replaces the target's."""
    meta = {str(key): int(value) for key, value in reader.execute("SELECT key, value FROM meta")}
    await conn.executemany(
        "INSERT INTO meta (key, value) VALUES ($1, $2)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        list(meta.items()),
    )
    return meta
