"""SQL for :class:`TaskFilter`: one place, shared by List, Delete and the stats."""

from __future__ import annotations

from typing import Any

from ...domain.model import QUEUED, Micros, TaskFilter, TaskState
from .rows import placeholders


def filter_sql(flt: TaskFilter, now: Micros) -> tuple[str, list[Any]]:
    """A WHERE clause (without the keyword; ``1`` when empty) and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if flt.task_id:
        clauses.append("id = ?")
        params.append(flt.task_id)
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
            ors.append("(state IN (2, 7) AND due_at > ?)")
            params.append(now)
        elif queued_pending:
            ors.append("(state IN (2, 7) AND due_at <= ?)")
            params.append(now)
        if stored:
            ors.append(f"state IN ({placeholders(len(stored))})")
            params.extend(int(s) for s in stored)
        clauses.append("(" + " OR ".join(ors) + ")")
    if flt.types:
        types = sorted(flt.types)
        clauses.append(f"type IN ({placeholders(len(types))})")
        params.extend(types)
    if flt.client:
        clauses.append("client = ?")
        params.append(flt.client)
    if flt.group:
        # "grp != ''" lets SQLite use the partial index on grouped tasks.
        clauses.append("grp = ? AND grp != ''")
        params.append(flt.group)
    for key, value in sorted(flt.labels.items()):
        clauses.append("id IN (SELECT task_id FROM task_labels WHERE key = ? AND value = ?)")
        params.extend([key, value])
    return (" AND ".join(clauses) if clauses else "1"), params
