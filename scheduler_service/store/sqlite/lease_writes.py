"""Write handlers for leasing: claim due tasks, end attempts, heartbeats, reclaiming.

Fencing lives here. A task's current lease id is stored on its row; every write about an
attempt (its end, a heartbeat, a reclaim) matches on that id *and* on ``state = RUNNING``
inside the write transaction, so a result for a lease that was reclaimed, cancelled or
replaced finds no row and is refused without changing anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from ...domain.model import (
    AttemptEnd,
    AttemptOutcome,
    Backoff,
    ClaimOutcome,
    ClaimRequest,
    EndedAttempt,
    Lease,
    Micros,
    OnFailure,
    ProgressUpdate,
    TaskState,
)
from ...domain.transitions import RunningTask, Transition
from .cache import finish_followers
from .claims import ClaimLimits, choose
from .counts import Shape
from .groups import promote_next
from .rows import placeholders
from .writer import Tx

Decide = Callable[[RunningTask, AttemptEnd, Micros], Transition]


class _Running(NamedTuple):
    lease_id: str
    task_id: str
    session_id: str
    attempts: int
    max_attempts: int
    backoff_initial: int
    backoff_multiplier: float
    backoff_maximum: int
    backoff_jitter: float
    attempt_seq: int
    priority: int
    type: str
    grp: str
    on_failure: int
    cache: int


@dataclass
class LeaseWrites:
    decide: Decide
    priority_aging: Micros

    async def claim(self, tx: Tx, rounds: Sequence[Sequence[ClaimRequest]]) -> list[ClaimOutcome]:
        """Lease due tasks to the requests of each round (see :mod:`.claims` for the rules).
        A round is every session's request of one dispatch, submitted as one write.

        Requests for the same types are served by one choice of tasks, handed out in request
        order (the first request gets the first tasks): a fleet of identical workers costs
        one query a round, not one per stream. Tasks taken are RUNNING by the time the next
        choice looks, so no task is leased twice. Answers, per round, each request's leases
        and when a rate limit that held tasks back frees up.
        """
        limits = await ClaimLimits.load(tx)
        dry: set[str] = set()  # types with nothing more to lease in this transaction
        answers: list[list[list[Lease]]] = []
        for requests in rounds:
            leases: list[list[Lease]] = [[] for _ in requests]
            by_types: dict[frozenset[str], list[int]] = {}
            for i, request in enumerate(requests):
                if request.limit > 0:
                    by_types.setdefault(request.types, []).append(i)
            for types, members in by_types.items():
                if types - limits.paused <= dry:
                    continue  # nothing more to lease for these types
                wanted = sum(requests[i].limit for i in members)
                chosen = await choose(tx, replace(requests[members[0]], limit=wanted), limits, dry)
                start = 0
                for i in members:
                    part = chosen[start : start + requests[i].limit]
                    if not part:
                        break
                    start += len(part)
                    leases[i] = await self._lease(tx, requests[i], [c.task_id for c in part])
            answers.append(leases)
        await limits.save(tx)
        return [ClaimOutcome(leases, limits.retry_at) for leases in answers]

    async def _lease(self, tx: Tx, request: ClaimRequest, task_ids: list[str]) -> list[Lease]:
        revision = await tx.revision()
        now = tx.now
        async with tx.conn.execute(
            f"""UPDATE tasks SET state = 3, lease_id = lower(hex(randomblob(8))),
                    worker_id = ?, session_id = ?, lease_expires_at = ?,
                    attempt_deadline = ? + timeout, attempts = attempts + 1,
                    attempt_seq = attempt_seq + 1, started_at = coalesce(started_at, ?),
                    updated_at = ?, revision = ?
                WHERE state = 2 AND id IN ({placeholders(len(task_ids))})
                RETURNING id, type, payload, lease_id, attempts, attempt_seq, max_attempts,
                    timeout, created_at, labels, due_at, trace_context""",
            [
                request.worker_id,
                request.session_id,
                tx.mono + request.lease_ttl,
                tx.mono,
                now,
                now,
                revision,
                *task_ids,
            ],
        ) as cursor:
            rows = list(await cursor.fetchall())
        for row in rows:  # queued -> running, one more attempt
            tx.counts.changed(
                Shape(row[1], 2, row[4] - 1, row[6]), Shape(row[1], 3, row[4], row[6])
            )
        # started_at is the lease time until the worker reports when the handler started.
        await tx.conn.executemany(
            "INSERT INTO attempts (task_id, number, lease_id, worker_id, started_at, due_at, "
            "leased_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(row[0], row[5], row[3], request.worker_id, now, row[10], now) for row in rows],
        )
        order = {task_id: i for i, task_id in enumerate(task_ids)}
        rows.sort(key=lambda row: order[row[0]])
        return [
            Lease(
                lease_id=row[3],
                task_id=row[0],
                type=row[1],
                payload_json=row[2],
                attempt=row[4],
                max_attempts=row[6],
                timeout=row[7],
                created_at=row[8],
                labels=json.loads(row[9]),
                due_at=row[10],
                trace_context=row[11],
            )
            for row in rows
        ]

    async def end(
        self, tx: Tx, batches: Sequence[Sequence[AttemptEnd]]
    ) -> list[list[EndedAttempt]]:
        ends = [end for batch in batches for end in batch]
        results = await self.end_attempts(tx, ends)
        out, position = [], 0
        for batch in batches:
            out.append(results[position : position + len(batch)])
            position += len(batch)
        return out

    async def end_attempts(self, tx: Tx, ends: Sequence[AttemptEnd]) -> list[EndedAttempt]:
        """Apply each end whose lease is current; refuse the others (stale)."""
        current: dict[str, _Running] = {}
        lease_ids = sorted({end.lease_id for end in ends if end.lease_id})
        for start in range(0, len(lease_ids), 500):
            chunk = lease_ids[start : start + 500]
            async with tx.conn.execute(
                f"""SELECT lease_id, id, session_id, attempts, max_attempts, backoff_initial,
                        backoff_multiplier, backoff_maximum, backoff_jitter, attempt_seq,
                        priority, type, grp, on_failure, cache
                    FROM tasks WHERE state = 3 AND lease_id IN ({placeholders(len(chunk))})""",
                chunk,
            ) as cursor:
                for found in await cursor.fetchall():
                    current[found[0]] = _Running(*found)
        if not current:
            return [_refused(end) for end in ends]
        revision = await tx.revision()
        now = tx.now
        task_updates, attempt_updates, answers = [], [], []
        groups: list[str] = []
        finished: list[tuple[str, Transition]] = []  # cached leaders that finished
        for end in ends:
            row = current.pop(end.lease_id, None)  # pop: a duplicate report is refused
            if row is None:
                answers.append(_refused(end))
                continue
            running = RunningTask(
                task_id=row.task_id,
                attempts=row.attempts,
                max_attempts=row.max_attempts,
                backoff=Backoff(
                    row.backoff_initial,
                    row.backoff_multiplier,
                    row.backoff_maximum,
                    row.backoff_jitter,
                ),
            )
            change = self.decide(running, end, now)
            due_at = change.due_at
            claim_key = None if due_at is None else due_at - row.priority * self.priority_aging
            task_updates.append(
                {
                    "state": int(change.state), "due_at": due_at, "claim_key": claim_key,
                    "result": change.result_json, "error": change.error,
                    "attempts": change.attempts, "finished_at": now if change.finished else None,
                    "now": now, "revision": revision, "id": row.task_id, "lease_id": row.lease_id,
                    "first": row.attempt_seq == 1, "started": end.started_at,
                }
            )  # fmt: skip
            tx.counts.changed(
                Shape(row.type, 3, row.attempts, row.max_attempts),
                Shape(row.type, int(change.state), change.attempts, row.max_attempts),
            )
            attempt_updates.append(
                (now, int(end.outcome), end.error, end.started_at, now, row.task_id,
                 row.attempt_seq)
            )  # fmt: skip
            if row.grp and _leaves_group(change.state, row.on_failure):
                groups.append(row.grp)
            if row.cache and change.state in (TaskState.SUCCEEDED, TaskState.FAILED):
                finished.append((row.task_id, change))
            answers.append(
                EndedAttempt(
                    lease_id=end.lease_id,
                    accepted=True,
                    task_id=row.task_id,
                    new_state=change.state,
                    outcome=end.outcome,
                    session_id=row.session_id,
                    type=row.type,
                )
            )
        await tx.conn.executemany(
            """UPDATE tasks SET state = :state, due_at = coalesce(:due_at, due_at),
                   claim_key = coalesce(:claim_key, claim_key),
                   result = :result, error = :error, attempts = :attempts,
                   finished_at = :finished_at, updated_at = :now, revision = :revision,
                   lease_id = '', worker_id = '', session_id = '',
                   lease_expires_at = NULL, attempt_deadline = NULL,
                   -- The task's start is its first attempt's, as the worker reported it.
                   started_at = CASE WHEN :first AND :started BETWEEN started_at AND :now
                                THEN :started ELSE started_at END
               WHERE id = :id AND lease_id = :lease_id AND state = 3""",
            task_updates,
        )
        # The worker's start time is kept only if it is plausible (between lease and now).
        await tx.conn.executemany(
            """UPDATE attempts SET finished_at = ?1, outcome = ?2, error = ?3,
                   started_at = CASE WHEN ?4 BETWEEN leased_at AND ?5 THEN ?4 ELSE started_at END
               WHERE task_id = ?6 AND number = ?7""",
            attempt_updates,
        )
        await promote_next(tx, groups, self.priority_aging)
        for leader_id, change in finished:
            await finish_followers(tx, leader_id, change.state, change.result_json, change.error)
        return answers

    async def progress(self, tx: Tx, batches: Sequence[Sequence[ProgressUpdate]]) -> list[None]:
        """Store the latest progress of running tasks; reports for stale leases do nothing."""
        updates = [u for batch in batches for u in batch]
        if updates:
            revision = await tx.revision()
            await tx.conn.executemany(
                """UPDATE tasks INDEXED BY tasks_running_lease
                   SET progress_percent = ?, progress_message = ?, progress_details = ?,
                       progress_at = ?, updated_at = ?, revision = ?
                   WHERE state = 3 AND lease_id = ?""",
                [
                    (u.percent, u.message, u.details_json, tx.now, tx.now, revision, u.lease_id)
                    for u in updates
                ],
            )
        return [None] * len(batches)

    async def heartbeat(
        self, tx: Tx, calls: Sequence[tuple[Sequence[tuple[str, Sequence[str]]], Micros]]
    ) -> list[list[list[str]]]:
        """Per call, its beats (a session and the lease ids it holds) and the lease TTL:
        extend each session's named leases; answer, per beat, the ids that are not current.

        All the beats of a commit in three statements whatever their number: a fleet
        started together heartbeats together, and a burst of 1,000 beats at a few
        statements each stalled every other write for a fifth of a second.
        """
        beats = [(session_id, ids, ttl) for call, ttl in calls for session_id, ids in call]
        await tx.conn.executemany(
            "UPDATE workers SET last_heartbeat_at = ? WHERE session_id = ?",
            [(tx.now, session_id) for session_id, _, _ in beats],
        )
        named = [(session_id, sorted(set(lease_ids))) for session_id, lease_ids, _ in beats]
        # "state = 3" restates the partial index's condition so that SQLite uses it.
        await tx.conn.executemany(
            "UPDATE tasks INDEXED BY tasks_running_lease SET lease_expires_at = ? "
            "WHERE state = 3 AND lease_id = ? AND session_id = ?",
            [
                (tx.mono + ttl, lease_id, session_id)
                for (session_id, ids), (_, _, ttl) in zip(named, beats, strict=True)
                for lease_id in ids
            ],
        )
        current: set[tuple[str, str]] = set()
        every_id = sorted({lease_id for _, ids in named for lease_id in ids})
        for start in range(0, len(every_id), 500):
            chunk = every_id[start : start + 500]
            async with tx.conn.execute(
                "SELECT session_id, lease_id FROM tasks INDEXED BY tasks_running_lease "
                f"WHERE state = 3 AND lease_id IN ({placeholders(len(chunk))})",
                chunk,
            ) as cursor:
                current.update((row[0], row[1]) for row in await cursor.fetchall())
        stale = [
            [lease_id for lease_id in ids if (session_id, lease_id) not in current]
            for session_id, ids in named
        ]
        answers, position = [], 0
        for call, _ in calls:
            answers.append(stale[position : position + len(call)])
            position += len(call)
        return answers

    async def reclaim_expired(self, tx: Tx, calls: Sequence[None]) -> list[list[EndedAttempt]]:
        async with tx.conn.execute(
            """SELECT lease_id, attempt_deadline <= ? FROM tasks
               WHERE state = 3 AND (lease_expires_at <= ? OR attempt_deadline <= ?)""",
            (tx.mono, tx.mono, tx.mono),
        ) as cursor:
            rows = await cursor.fetchall()
        ends = [
            AttemptEnd(
                lease_id=row[0],
                outcome=AttemptOutcome.TIMED_OUT if row[1] else AttemptOutcome.WORKER_LOST,
                error="attempt timed out" if row[1] else "lease expired: no heartbeat",
            )
            for row in rows
        ]
        ended = await self.end_attempts(tx, ends) if ends else []
        return [ended] + [[] for _ in calls[1:]]

    async def release_sessions(
        self, tx: Tx, releases: Sequence[tuple[str, bool]]
    ) -> list[list[EndedAttempt]]:
        """End every lease of each (session, returned) pair: as RETURNED (not counted)
        when the worker drained and closed cleanly, else as a lost worker."""
        answers = []
        for session_id, returned in releases:
            await tx.conn.execute("DELETE FROM workers WHERE session_id = ?", (session_id,))
            async with tx.conn.execute(
                "SELECT lease_id FROM tasks WHERE state = 3 AND session_id = ?", (session_id,)
            ) as cursor:
                lease_ids = [row[0] for row in await cursor.fetchall()]
            outcome = AttemptOutcome.RETURNED if returned else AttemptOutcome.WORKER_LOST
            error = "returned by a draining worker" if returned else "worker stream closed"
            ends = [AttemptEnd(lease_id, outcome, error=error) for lease_id in lease_ids]
            answers.append(await self.end_attempts(tx, ends) if ends else [])
        return answers


def _leaves_group(state: TaskState, on_failure: int) -> bool:
    """Whether a task in this state no longer holds its group (so the next may run)."""
    if state in (TaskState.SUCCEEDED, TaskState.CANCELLED):
        return True
    return state == TaskState.FAILED and on_failure == int(OnFailure.SKIP)


def _refused(end: AttemptEnd) -> EndedAttempt:
    return EndedAttempt(
        lease_id=end.lease_id,
        accepted=False,
        reason=f"lease {end.lease_id or '(empty)'} is not current: the task was reclaimed, "
        "cancelled, deleted or already finished",
    )
