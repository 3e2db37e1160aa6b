"""Choosing which due tasks a claim takes on PostgreSQL: claim order, paused types, limits.

The rules are the SQLite store's (``store/sqlite/claims.py``, whose docstring explains
them); this module ports the SQL. It runs inside the claim's write transaction, which
holds the revision row lock (``writer.py``), so what it counts (running tasks, recent
starts) is exact across every scheduler replica sharing the database, and what it takes is
leased before any other replica's write transaction can look.

- Candidates of all the request's types come from one statement: a ``LATERAL`` subquery
  per type (one range of the ``tasks_claim`` index each, in claim-key order), the types
  and their positions passed as arrays, so the statement is the same whatever the number
  of types and is prepared once per connection.
- The candidate rows are locked ``FOR UPDATE SKIP LOCKED``. Write transactions are
  serialised by the revision row lock, so today no other writer can hold one of these
  rows; the lock clause keeps a claim correct even for a writer that ever locks task rows
  without the revision lock (an operator's maintenance statement, a future writer): it
  skips them instead of waiting on them or leasing them twice.
- Rate-limited starts are stamped with the transaction's time (``tx.now``, the scheduler's
  wall clock), as the dispatcher compares :attr:`ClaimLimits.retry_at` with that clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ...domain.model import ClaimRequest, ConcurrencyLimits, Micros

# The room arithmetic of a scope is the same on both backends: one copy of it.
from ..sqlite.claims import UNLIMITED, Candidate
from ..sqlite.claims import _Scope as Scope
from .writer import PgTx

# Extra candidates fetched per type, for those skipped because their key is full.
_MARGIN = 32
_MAX_PAGES = 50
_MAX_EXCLUDED_KEYS = 400
_PRUNE_AFTER: Micros = 3_600 * 1_000_000  # rate windows are shorter than this


@dataclass
class ClaimLimits:
    paused: set[str]
    types: dict[str, Scope]
    keys: dict[str, Scope | None] = field(default_factory=dict)  # None: no limits
    starts: list[tuple[str, Micros]] = field(default_factory=list)
    retry_at: Micros | None = None

    @classmethod
    async def load(cls, tx: PgTx) -> ClaimLimits:
        rows = await tx.conn.fetch(
            "SELECT name, paused, max_running, max_per_second FROM task_types "
            "WHERE paused = 1 OR max_running > 0 OR max_per_second > 0"
        )
        limits = cls(paused={r["name"] for r in rows if r["paused"]}, types={})
        for row in rows:
            scope_limits = ConcurrencyLimits(row["max_running"], row["max_per_second"])
            if scope_limits.is_set:
                limits.types[row["name"]] = await _load_scope(
                    tx, f"type:{row['name']}", scope_limits
                )
        return limits

    async def key_scope(self, tx: PgTx, key: str) -> Scope | None:
        if key not in self.keys:
            row = await tx.conn.fetchrow(
                "SELECT max_running, max_per_second FROM concurrency_keys WHERE key = $1", key
            )
            limits = (
                ConcurrencyLimits(row["max_running"], row["max_per_second"])
                if row
                else ConcurrencyLimits()
            )
            self.keys[key] = await _load_scope(tx, f"key:{key}", limits) if limits.is_set else None
        return self.keys[key]

    def full_keys(self) -> list[str]:
        full = [k for k, scope in self.keys.items() if scope is not None and scope.room() <= 0]
        return sorted(full)[:_MAX_EXCLUDED_KEYS]

    def note_throttled(self, scope: Scope) -> None:
        frees = scope.frees_at()
        if frees is not None and (self.retry_at is None or frees < self.retry_at):
            self.retry_at = frees

    def record(self, tx: PgTx, candidate: Candidate) -> None:
        for scope in (self.types.get(candidate.type), self.keys.get(candidate.key)):
            if scope is not None:
                scope.took(tx.now)
                if scope.limits.max_per_second > 0:
                    self.starts.append((scope.name, tx.now))

    async def save(self, tx: PgTx) -> None:
        if self.starts:
            await tx.conn.execute(
                "INSERT INTO rate_starts (scope, started_at) "
                "SELECT * FROM unnest($1::text[], $2::bigint[])",
                [scope for scope, _ in self.starts],
                [started for _, started in self.starts],
            )
            self.starts = []
            await tx.conn.execute(
                "DELETE FROM rate_starts WHERE started_at < $1", tx.now - _PRUNE_AFTER
            )


async def _load_scope(tx: PgTx, name: str, limits: ConcurrencyLimits) -> Scope:
    scope = Scope(name, limits)
    kind, _, value = name.partition(":")
    if limits.max_running > 0:
        column = "type" if kind == "type" else "concurrency_key"
        extra = "" if kind == "type" else " AND concurrency_key != ''"
        running = await tx.conn.fetchval(
            f"SELECT count(*) FROM tasks WHERE state = 3 AND {column} = $1{extra}", value
        )
        scope.running = int(running or 0)
    if limits.max_per_second > 0:
        _, window = limits.rate_window()
        row = await tx.conn.fetchrow(
            "SELECT count(*) AS starts, min(started_at) AS oldest FROM rate_starts "
            "WHERE scope = $1 AND started_at > $2",
            name,
            tx.now - window,
        )
        if row is not None:
            scope.window_starts, scope.oldest_start = int(row["starts"]), row["oldest"]
    return scope


# $1..$4: per type its name, position (claim key, id) and how many to fetch; $5: now;
# $6: concurrency keys at their limit (left out).
_CANDIDATES = """
SELECT c.id, c.claim_key, c.type, c.concurrency_key
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::integer[])
    AS p(type, after_key, after_id, wanted)
CROSS JOIN LATERAL (
    SELECT t.id, t.claim_key, t.type, t.concurrency_key FROM tasks t
    WHERE t.state = 2 AND t.type = p.type AND t.claim_key <= $5 AND t.due_at <= $5
      AND (t.claim_key, t.id) > (p.after_key, p.after_id)
      AND NOT (t.concurrency_key = ANY($6::text[]))
    ORDER BY t.claim_key, t.id
    LIMIT p.wanted
    FOR UPDATE OF t SKIP LOCKED
) AS c
"""


async def choose(
    tx: PgTx, request: ClaimRequest, limits: ClaimLimits, dry: set[str]
) -> list[Candidate]:
    """Up to ``request.limit`` due tasks of the request's types, within every limit.

    ``dry`` holds the types known, in this transaction, to have nothing more to lease
    (see the SQLite store's ``choose``); this call adds the types it finds dry.
    """
    remaining = request.limit
    caps: dict[str, float] = {}
    for name in sorted(request.types - limits.paused - dry):
        scope = limits.types.get(name)
        room = scope.room() if scope is not None else UNLIMITED
        if room <= 0:
            if scope is not None:
                limits.note_throttled(scope)
            dry.add(name)
            continue
        caps[name] = room
    chosen: list[Candidate] = []
    positions: dict[str, tuple[Micros, str]] = {name: (-(2**62), "") for name in caps}
    for _ in range(_MAX_PAGES):
        if remaining <= 0 or not caps:
            break
        page, exhausted = await _fetch(tx, caps, positions, remaining, limits.full_keys())
        seen_all = True
        for candidate in page:
            if remaining <= 0:
                seen_all = False  # candidates left unlooked-at: nothing is known dry
                break
            positions[candidate.type] = (candidate.claim_key, candidate.task_id)
            if caps.get(candidate.type, 0) <= 0:
                continue
            key_scope = await limits.key_scope(tx, candidate.key) if candidate.key else None
            if key_scope is not None and key_scope.room() <= 0:
                limits.note_throttled(key_scope)
                continue
            chosen.append(candidate)
            limits.record(tx, candidate)
            remaining -= 1
            caps[candidate.type] -= 1
            if caps[candidate.type] <= 0:
                type_scope = limits.types.get(candidate.type)
                if type_scope is not None:
                    limits.note_throttled(type_scope)
        # Types with nothing more to offer, or no room left, are not asked again.
        if seen_all:
            dry.update(exhausted)
        dry.update(name for name, cap in caps.items() if cap <= 0)
        caps = {name: cap for name, cap in caps.items() if cap > 0 and name not in exhausted}
    return chosen


async def _fetch(
    tx: PgTx,
    caps: dict[str, float],
    positions: dict[str, tuple[Micros, str]],
    remaining: int,
    full_keys: Sequence[str],
) -> tuple[list[Candidate], set[str]]:
    """The next candidates of each capped type after its position, merged in claim order.

    Answers them and the types that have no more candidates.
    """
    names = sorted(caps)
    wanted = {name: int(min(caps[name], remaining)) + _MARGIN for name in names}
    rows = await tx.conn.fetch(
        _CANDIDATES,
        names,
        [positions[name][0] for name in names],
        [positions[name][1] for name in names],
        [wanted[name] for name in names],
        tx.now,
        list(full_keys),
    )
    page = [Candidate(r["id"], r["claim_key"], r["type"], r["concurrency_key"]) for r in rows]
    got: dict[str, int] = {}
    for candidate in page:
        got[candidate.type] = got.get(candidate.type, 0) + 1
    exhausted = {name for name in names if got.get(name, 0) < wanted[name]}
    page.sort(key=lambda c: (c.claim_key, c.task_id))
    return page, exhausted
