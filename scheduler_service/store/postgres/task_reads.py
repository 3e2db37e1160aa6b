"""Reads of tasks on PostgreSQL: list pages, attempt histories, the change feed.

Reads that need one snapshot over several statements (a page and its revision, a FULL
page and its attempts, the change feed's two halves) run in a REPEATABLE READ read-only
transaction on a pooled connection of their own (see :func:`snapshot`): unlike SQLite's
single snapshot reader, any number of them may run at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from ...domain.model import AttemptRecord, Change, Micros, TaskFilter, TaskRecord
from ..sqlite.rows import (
    ATTEMPT_COLUMNS,
    TASK_COLUMNS,
    TASK_COLUMNS_BASIC,
    attempt_from_row,
    task_from_row,
)
from .filters import Params, filter_sql


def snapshot(conn: asyncpg.Connection) -> asyncpg.transaction.Transaction:
    """A read-only transaction in which every statement sees one snapshot."""
    return conn.transaction(isolation="repeatable_read", readonly=True)


def qualified(table: str, columns: str) -> str:
    """``"a, b"`` as ``"t.a, t.b"``: the tasks and attempts tables share column names."""
    return ", ".join(f"{table}.{column.strip()}" for column in columns.split(","))


async def attempts_of(
    conn: asyncpg.Connection, task_ids: Sequence[str]
) -> dict[str, list[AttemptRecord]]:
    """The attempt histories of ``task_ids`` in one statement."""
    found: dict[str, list[AttemptRecord]] = {task_id: [] for task_id in task_ids}
    if not task_ids:
        return found
    rows = await conn.fetch(
        f"SELECT task_id, {ATTEMPT_COLUMNS} FROM attempts "
        "WHERE task_id = ANY($1::text[]) ORDER BY task_id, number",
        list(task_ids),
    )
    for row in rows:
        found[row["task_id"]].append(attempt_from_row(tuple(row)[1:]))
    return found


async def list_page(
    conn: asyncpg.Connection,
    flt: TaskFilter,
    now: Micros,
    limit: int,
    after_id: str | None,
    descending: bool,
    full: bool,
) -> tuple[list[TaskRecord], int]:
    """One page of tasks by id, and the revision it was read at (run in :func:`snapshot`)."""
    params = Params()
    where = filter_sql(flt, now, params)
    if after_id is not None:
        where += f" AND id {'<' if descending else '>'} {params.add(after_id)}"
    columns = TASK_COLUMNS if full else TASK_COLUMNS_BASIC
    order = "DESC" if descending else "ASC"
    revision = await conn.fetchval("SELECT value FROM meta WHERE key = 'revision'")
    rows = await conn.fetch(
        f"SELECT {columns} FROM tasks WHERE {where} ORDER BY id {order} LIMIT {params.add(limit)}",
        *params.values,
    )
    return [task_from_row(tuple(row)) for row in rows], int(revision)


async def changes_since(pool: asyncpg.Pool, cursor: tuple[int, str], limit: int) -> list[Change]:
    """Changed tasks and deletions after ``cursor`` (revision, task id), in that order.

    Both halves come from one snapshot: read apart, a commit between them could show a
    deletion of revision N without the other changes of N, and a watcher resuming after
    N would never see those.
    """
    revision, task_id = cursor
    async with pool.acquire() as conn, snapshot(conn):
        tasks = await conn.fetch(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE (revision, id) > ($1, $2) "
            "ORDER BY revision, id LIMIT $3",
            revision, task_id, limit,
        )  # fmt: skip
        deleted = await conn.fetch(
            "SELECT revision, task_id, type, client FROM deleted_tasks "
            "WHERE (revision, task_id) > ($1, $2) ORDER BY revision, task_id LIMIT $3",
            revision, task_id, limit,
        )  # fmt: skip
    changes = [
        Change(revision=t.revision, task_id=t.id, task=t, type=t.type, client=t.client)
        for t in (task_from_row(tuple(row)) for row in tasks)
    ] + [
        Change(
            revision=row["revision"],
            task_id=row["task_id"],
            task=None,
            type=row["type"],
            client=row["client"],
        )
        for row in deleted
    ]
    changes.sort(key=lambda change: (change.revision, change.task_id))
    return changes[:limit]
