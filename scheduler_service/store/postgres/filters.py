"""SQL for :class:`TaskFilter` on PostgreSQL: one place, shared by List and Delete.

The SQLite version's clauses with ``$n`` placeholders (asyncpg numbers its parameters),
and lists bound as one array each (``= ANY($n)``) instead of a placeholder per item.
"""

from __future__ import annotations

from typing import Any

from ...domain.model import QUEUED, Micros, TaskFilter, TaskState


class Params:
    """Parameters of one statement: ``add`` binds a value and answers its ``$n``."""

    def __init__(self, values: list[Any] | None = None) -> None:
        self.values: list[Any] = list(values or [])

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def filter_sql(flt: TaskFilter, now: Micros, params: Params) -> str:
    """A WHERE clause (without the keyword; ``TRUE`` when empty); binds into ``params``."""
    clauses: list[str] = []
    if flt.task_id:
        clauses.append(f"id = {params.add(flt.task_id)}")
    if flt.states:
        ors: list[str] = []
        stored: list[TaskState] = sorted(
            s for s in flt.states if s not in (TaskState.SCHEDULED, TaskState.PENDING)
        )
        queued_scheduled = TaskState.SCHEDULED in flt.states
        queued_pending = TaskState.PENDING in flt.states
        # Queued and group-waiting tasks read as SCHEDULED or PENDING by their due time.
        if queued_scheduled and queued_pending:
            stored.extend([QUEUED, TaskState.WAITING])
        elif queued_scheduled:
            ors.append(f"(state IN (2, 7) AND due_at > {params.add(now)})")
        elif queued_pending:
            ors.append(f"(state IN (2, 7) AND due_at <= {params.add(now)})")
        if stored:
            ors.append(f"state = ANY({params.add([int(s) for s in stored])}::integer[])")
        clauses.append("(" + " OR ".join(ors) + ")")
    if flt.types:
        clauses.append(f"type = ANY({params.add(sorted(flt.types))}::text[])")
    if flt.client:
        clauses.append(f"client = {params.add(flt.client)}")
    if flt.group:
        clauses.append(f"grp = {params.add(flt.group)} AND grp != ''")
    for key, value in sorted(flt.labels.items()):
        clauses.append(
            "id IN (SELECT task_id FROM task_labels "
            f"WHERE key = {params.add(key)} AND value = {params.add(value)})"
        )
    return " AND ".join(clauses) if clauses else "TRUE"
