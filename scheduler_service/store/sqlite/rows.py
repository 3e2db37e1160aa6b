"""Mapping between SQLite rows and the domain records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...domain.model import (
    AttemptOutcome,
    AttemptRecord,
    Backoff,
    OnFailure,
    Progress,
    TaskRecord,
    TaskState,
    WorkerRecord,
)

TASK_COLUMNS = (
    "id, type, payload, state, priority, run_at, due_at, max_attempts, backoff_initial, "
    "backoff_multiplier, backoff_maximum, backoff_jitter, timeout, grp, idempotency_key, "
    "cache, client, labels, result, error, attempts, created_at, updated_at, started_at, "
    "finished_at, revision, worker_id, lease_id, on_failure, concurrency_key, cached, "
    "cached_from, progress_percent, progress_message, progress_details, progress_at"
)

# The same columns without payload and result, for lists in the BASIC view.
TASK_COLUMNS_BASIC = TASK_COLUMNS.replace("payload,", "'' AS payload,").replace(
    "result,", "NULL AS result,"
)

ATTEMPT_COLUMNS = (
    "number, worker_id, lease_id, started_at, finished_at, outcome, error, due_at, leased_at"
)

WORKER_COLUMNS = (
    "session_id, worker_id, scheduler_id, hostname, pid, version, task_types, slots, "
    "connected_at, last_heartbeat_at, draining"
)


def task_from_row(row: Sequence[Any]) -> TaskRecord:
    return TaskRecord(
        id=row[0],
        type=row[1],
        payload_json=row[2],
        state=TaskState(row[3]),
        priority=row[4],
        run_at=row[5],
        due_at=row[6],
        max_attempts=row[7],
        backoff=Backoff(row[8], row[9], row[10], row[11]),
        timeout=row[12],
        group=row[13],
        idempotency_key=row[14],
        cache=bool(row[15]),
        client=row[16],
        labels=json.loads(row[17]),
        result_json=row[18],
        error=row[19],
        attempts=row[20],
        created_at=row[21],
        updated_at=row[22],
        started_at=row[23],
        finished_at=row[24],
        revision=row[25],
        worker_id=row[26],
        lease_id=row[27],
        on_failure=OnFailure(row[28]),
        concurrency_key=row[29],
        cached=bool(row[30]),
        cached_from=row[31],
        progress=(None if row[35] is None else Progress(row[32], row[33], row[34], row[35])),
    )


def attempt_from_row(row: Sequence[Any]) -> AttemptRecord:
    return AttemptRecord(
        number=row[0],
        worker_id=row[1],
        lease_id=row[2],
        started_at=row[3],
        finished_at=row[4],
        outcome=AttemptOutcome(row[5]),
        error=row[6],
        due_at=row[7],
        leased_at=row[8],
    )


def worker_from_row(row: Sequence[Any], in_flight: int) -> WorkerRecord:
    return WorkerRecord(
        session_id=row[0],
        worker_id=row[1],
        scheduler_id=row[2],
        hostname=row[3],
        pid=row[4],
        version=row[5],
        task_types=tuple(json.loads(row[6])),
        slots=row[7],
        connected_at=row[8],
        last_heartbeat_at=row[9],
        draining=bool(row[10]),
        in_flight=in_flight,
    )


def placeholders(count: int) -> str:
    return ",".join("?" * count)
