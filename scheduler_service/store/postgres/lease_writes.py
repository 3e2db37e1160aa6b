"""Write handlers for leasing on PostgreSQL: claim due tasks, end attempts, heartbeats,
reclaiming expired leases, releasing a closed stream's leases.

The rules are the SQLite store's (``store/sqlite/lease_writes.py``), fencing included: every
write about an attempt matches on the task's current lease id *and* ``state = RUNNING``
inside the write transaction, so a report for a lease that was reclaimed, cancelled or
replaced finds no row and is refused without changing anything.

Lease deadlines (``lease_expires_at``, ``attempt_deadline``) are where this store differs.
Scheduler replicas on several hosts share no monotonic clock, and their wall clocks drift
apart, so one replica's deadline read by another's reaper would be off by their skew. The
only clock they all share is the database server's: deadlines are computed in SQL from the
server's time (``statement_timestamp()``) when a lease is granted or extended, and compared
with it when the reaper looks for expired leases. A scheduler host whose clock jumps moves
no deadline; a jump of the server's own wall clock does (PostgreSQL has no monotonic
clock to offer), which is why the server's clock should be NTP-disciplined.

Tests that move time by hand (``ManualClock``) cannot move the server's clock. For them,
:class:`LeaseClock` ``"store"`` takes "now" for deadlines from the store's injected clock
(the transaction's ``tx.now``, its *wall* clock, as the server's is a wall clock) through
the very same statements: the SQL reads ``coalesce($n, <server now>)``, given the store's
time in tests and NULL in production. See ``PostgresOptions.lease_clock``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import asyncpg

from ...domain.model import (
    AttemptEnd,
    AttemptOutcome,
    Backoff,
    ClaimOutcome,
    ClaimRequest,
    EndedAttempt,
    Lease,
    Micros,
    TaskState,
)
from ...domain.transitions import RunningTask, Transition

# The pure helpers are the SQLite store's: one copy of the group rule and of the refusal.
from ..sqlite.lease_writes import Decide, _leaves_group, _refused
from .cache import finish_followers
from .claims import ClaimLimits, choose
from .groups import promote_next
from .writer import PgTx

#: Whose clock lease deadlines are on: the database server's (production: every replica
#: shares it) or the store's injected clock (tests that move time by hand).
LeaseClock = Literal["server", "store"]

RUNNING = int(TaskState.RUNNING)
QUEUED = 2


def deadline_now(param: str) -> str:
    """SQL for "now" on the lease clock: the bound store time, or else the server's, in
    microseconds since the epoch (``param`` is NULL in production)."""
    return (
        f"coalesce({param}::bigint, (extract(epoch FROM statement_timestamp()) * 1000000)::bigint)"
    )


_LEASE = f"""
UPDATE tasks SET state = 3, lease_id = substr(md5(gen_random_uuid()::text), 1, 16),
    worker_id = $1, session_id = $2,
    lease_expires_at = {deadline_now("$3")} + $4::bigint,
    attempt_deadline = {deadline_now("$3")} + timeout,
    attempts = attempts + 1, attempt_seq = attempt_seq + 1,
    started_at = coalesce(started_at, $5), updated_at = $5, revision = $6
WHERE state = 2 AND id = ANY($7::text[])
RETURNING id, type, payload, lease_id, attempts, attempt_seq, max_attempts,
    timeout, created_at, labels, due_at, trace_context
"""

_ADD_ATTEMPT = """
INSERT INTO attempts (task_id, number, lease_id, worker_id, started_at, due_at, leased_at)
VALUES ($1, $2, $3, $4, $5, $6, $5)
"""

_CURRENT = """
SELECT lease_id, id, session_id, attempts, max_attempts, backoff_initial,
    backoff_multiplier, backoff_maximum, backoff_jitter, attempt_seq,
    priority, type, grp, on_failure, cache
FROM tasks WHERE state = 3 AND lease_id = ANY($1::text[])
"""

# The task's start is its first attempt's, as the worker reported it, if plausible.
_END_TASK = """
UPDATE tasks SET state = $1, due_at = coalesce($2, due_at),
    claim_key = coalesce($3, claim_key), result = $4, error = $5, attempts = $6,
    finished_at = $7, updated_at = $8, revision = $9,
    lease_id = '', worker_id = '', session_id = '',
    lease_expires_at = NULL, attempt_deadline = NULL,
    started_at = CASE WHEN $12::boolean AND $13::bigint BETWEEN started_at AND $8
                 THEN $13::bigint ELSE started_at END
WHERE id = $10 AND lease_id = $11 AND state = 3
"""

# The worker's start time is kept only if it is plausible (between lease and now).
_END_ATTEMPT = """
UPDATE attempts SET finished_at = $1, outcome = $2, error = $3,
    started_at = CASE WHEN $4::bigint BETWEEN leased_at AND $1 THEN $4::bigint
                 ELSE started_at END
WHERE task_id = $5 AND number = $6
"""

_EXTEND = f"""
UPDATE tasks SET lease_expires_at = {deadline_now("$1")} + beat.ttl
FROM unnest($2::text[], $3::text[], $4::bigint[]) AS beat(lease_id, session_id, ttl)
WHERE tasks.state = 3 AND tasks.lease_id = beat.lease_id
  AND tasks.session_id = beat.session_id
"""

_EXPIRED = f"""
SELECT lease_id, attempt_deadline <= clock.now AS timed_out
FROM tasks, (SELECT {deadline_now("$1")} AS now) AS clock
WHERE state = 3 AND (lease_expires_at <= clock.now OR attempt_deadline <= clock.now)
"""


_ANY_EXPIRED = f"""
SELECT EXISTS (
    SELECT 1 FROM tasks, (SELECT {deadline_now("$1")} AS now) AS clock
    WHERE state = 3 AND (lease_expires_at <= clock.now OR attempt_deadline <= clock.now)
)
"""


@dataclass
class PgLeaseWrites:
    decide: Decide
    priority_aging: Micros
    lease_clock: LeaseClock = "server"

    def clock_param(self, store_now: Micros) -> Micros | None:
        """The bound "now" of :func:`deadline_now` (NULL means the server's clock), given
        the store's clock's time."""
        return store_now if self.lease_clock == "store" else None

    def _clock_param(self, tx: PgTx) -> Micros | None:
        return self.clock_param(tx.now)

    async def any_expired(self, pool: asyncpg.Pool, store_now: Micros) -> bool:
        """Whether a lease expired or an attempt ran past its timeout: a read, so that the
        reaper of every replica (each second) writes only when there is something to end.
        (Every write transaction takes a revision and notifies every replica.)"""
        return bool(await pool.fetchval(_ANY_EXPIRED, self.clock_param(store_now)))

    async def claim(self, tx: PgTx, rounds: Sequence[Sequence[ClaimRequest]]) -> list[ClaimOutcome]:
        """Lease due tasks to the requests of each round (see :mod:`.claims` for the rules).

        As on SQLite: requests for the same types are served by one choice of tasks, handed
        out in request order, and tasks taken are RUNNING before the next choice looks.
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

    async def _lease(self, tx: PgTx, request: ClaimRequest, task_ids: list[str]) -> list[Lease]:
        rows = await tx.conn.fetch(
            _LEASE,
            request.worker_id,
            request.session_id,
            self._clock_param(tx),
            request.lease_ttl,
            tx.now,
            tx.revision,
            task_ids,
        )
        for row in rows:  # queued -> running, one more attempt
            tx.counts.add(row["type"], QUEUED, row["attempts"] - 1, row["max_attempts"], -1)
            tx.counts.add(row["type"], RUNNING, row["attempts"], row["max_attempts"], 1)
        # started_at is the lease time until the worker reports when the handler started.
        await tx.conn.executemany(
            _ADD_ATTEMPT,
            [
                (r["id"], r["attempt_seq"], r["lease_id"], request.worker_id, tx.now, r["due_at"])
                for r in rows
            ],
        )
        order = {task_id: i for i, task_id in enumerate(task_ids)}
        return [
            Lease(
                lease_id=row["lease_id"],
                task_id=row["id"],
                type=row["type"],
                payload_json=row["payload"],
                attempt=row["attempts"],
                max_attempts=row["max_attempts"],
                timeout=row["timeout"],
                created_at=row["created_at"],
                labels=json.loads(row["labels"]),
                due_at=row["due_at"],
                trace_context=row["trace_context"],
            )
            for row in sorted(rows, key=lambda row: order[row["id"]])
        ]

    async def end(
        self, tx: PgTx, batches: Sequence[Sequence[AttemptEnd]]
    ) -> list[list[EndedAttempt]]:
        ends = [end for batch in batches for end in batch]
        results = await self.end_attempts(tx, ends)
        out, position = [], 0
        for batch in batches:
            out.append(results[position : position + len(batch)])
            position += len(batch)
        return out

    async def end_attempts(self, tx: PgTx, ends: Sequence[AttemptEnd]) -> list[EndedAttempt]:
        """Apply each end whose lease is current; refuse the others (stale)."""
        lease_ids = sorted({end.lease_id for end in ends if end.lease_id})
        current: dict[str, asyncpg.Record] = {
            row["lease_id"]: row for row in await tx.conn.fetch(_CURRENT, lease_ids)
        }
        if not current:
            return [_refused(end) for end in ends]
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
                task_id=row["id"],
                attempts=row["attempts"],
                max_attempts=row["max_attempts"],
                backoff=Backoff(
                    row["backoff_initial"],
                    row["backoff_multiplier"],
                    row["backoff_maximum"],
                    row["backoff_jitter"],
                ),
            )
            change = self.decide(running, end, now)
            due_at = change.due_at
            claim_key = None if due_at is None else due_at - row["priority"] * self.priority_aging
            task_updates.append(
                (int(change.state), due_at, claim_key, change.result_json, change.error,
                 change.attempts, now if change.finished else None, now, tx.revision,
                 row["id"], row["lease_id"], row["attempt_seq"] == 1, end.started_at)
            )  # fmt: skip
            tx.counts.add(row["type"], RUNNING, row["attempts"], row["max_attempts"], -1)
            tx.counts.add(row["type"], int(change.state), change.attempts, row["max_attempts"], 1)
            attempt_updates.append(
                (now, int(end.outcome), end.error, end.started_at, row["id"], row["attempt_seq"])
            )
            if row["grp"] and _leaves_group(change.state, row["on_failure"]):
                groups.append(row["grp"])
            if row["cache"] and change.state in (TaskState.SUCCEEDED, TaskState.FAILED):
                finished.append((row["id"], change))
            answers.append(
                EndedAttempt(
                    lease_id=end.lease_id,
                    accepted=True,
                    task_id=row["id"],
                    new_state=change.state,
                    outcome=end.outcome,
                    session_id=row["session_id"],
                    type=row["type"],
                )
            )
        await tx.conn.executemany(_END_TASK, task_updates)
        await tx.conn.executemany(_END_ATTEMPT, attempt_updates)
        await promote_next(tx, groups, self.priority_aging)
        for leader_id, change in finished:
            await finish_followers(tx, leader_id, change.state, change.result_json, change.error)
        return answers

    async def heartbeat(
        self, tx: PgTx, calls: Sequence[tuple[Sequence[tuple[str, Sequence[str]]], Micros]]
    ) -> list[list[list[str]]]:
        """Per call, its beats (a session and the lease ids it holds) and the lease TTL:
        extend each session's named leases; answer, per beat, the ids that are not current.

        All the beats of a commit in three statements whatever their number (arrays, not
        one statement per beat): a fleet started together heartbeats together.
        """
        beats = [(session_id, ids, ttl) for call, ttl in calls for session_id, ids in call]
        await tx.conn.execute(
            "UPDATE workers SET last_heartbeat_at = $1 WHERE session_id = ANY($2::text[])",
            tx.now,
            sorted({session_id for session_id, _, _ in beats}),
        )
        named = [(session_id, sorted(set(lease_ids))) for session_id, lease_ids, _ in beats]
        extend = [
            (lease_id, session_id, ttl)
            for (session_id, ids), (_, _, ttl) in zip(named, beats, strict=True)
            for lease_id in ids
        ]
        if extend:
            await tx.conn.execute(
                _EXTEND,
                self._clock_param(tx),
                [lease_id for lease_id, _, _ in extend],
                [session_id for _, session_id, _ in extend],
                [ttl for _, _, ttl in extend],
            )
        every_id = sorted({lease_id for _, ids in named for lease_id in ids})
        current = {
            (row["session_id"], row["lease_id"])
            for row in await tx.conn.fetch(
                "SELECT session_id, lease_id FROM tasks "
                "WHERE state = 3 AND lease_id = ANY($1::text[])",
                every_id,
            )
        }
        stale = [
            [lease_id for lease_id in ids if (session_id, lease_id) not in current]
            for session_id, ids in named
        ]
        answers, position = [], 0
        for call, _ in calls:
            answers.append(stale[position : position + len(call)])
            position += len(call)
        return answers

    async def reclaim_expired(self, tx: PgTx, calls: Sequence[None]) -> list[list[EndedAttempt]]:
        """End every attempt whose lease expired or that ran past its timeout, on the lease
        clock (the server's): a reaper on any replica sees the same deadlines."""
        rows = await tx.conn.fetch(_EXPIRED, self._clock_param(tx))
        ends = [
            AttemptEnd(row["lease_id"], AttemptOutcome.TIMED_OUT, error="attempt timed out")
            if row["timed_out"]
            else AttemptEnd(
                row["lease_id"], AttemptOutcome.WORKER_LOST, error="lease expired: no heartbeat"
            )
            for row in rows
        ]
        ended = await self.end_attempts(tx, ends) if ends else []
        return [ended] + [[] for _ in calls[1:]]

    async def release_sessions(
        self, tx: PgTx, releases: Sequence[tuple[str, bool]]
    ) -> list[list[EndedAttempt]]:
        """End every lease of each (session, returned) pair: as RETURNED (not counted)
        when the worker drained and closed cleanly, else as a lost worker."""
        answers = []
        for session_id, returned in releases:
            await tx.conn.execute("DELETE FROM workers WHERE session_id = $1", session_id)
            lease_ids = [
                row["lease_id"]
                for row in await tx.conn.fetch(
                    "SELECT lease_id FROM tasks WHERE state = 3 AND session_id = $1 "
                    "ORDER BY lease_id",
                    session_id,
                )
            ]
            outcome = AttemptOutcome.RETURNED if returned else AttemptOutcome.WORKER_LOST
            error = "returned by a draining worker" if returned else "worker stream closed"
            ends = [AttemptEnd(lease_id, outcome, error=error) for lease_id in lease_ids]
            answers.append(await self.end_attempts(tx, ends) if ends else [])
        return answers
