"""Choosing which due tasks a claim takes: claim order, paused types, limits.

Runs inside the claim's write transaction, so what it counts (running tasks, recent
starts) is exact across every scheduler process sharing the database, and what it takes
is leased before anyone else can look.

- Candidates come per type from the ``tasks_claim`` index in claim-key order (due time
  minus priority times the aging rate), one small query per type joined by UNION ALL.
- A type's ``max_running`` caps how many of its tasks may be RUNNING; ``max_per_second``
  caps starts in a sliding window (``ConcurrencyLimits.rate_window``). A concurrency key's limits do
  the same across types. Keys already at their limit are left out in SQL; the rest are
  checked as candidates are taken.
- Rate-limited starts are recorded in ``rate_starts``; when a rate limit held work back,
  :attr:`ClaimLimits.retry_at` says when its window frees up, so the dispatcher sets a
  timer instead of polling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...domain.model import ClaimRequest, ConcurrencyLimits, Micros
from .rows import placeholders
from .writer import Tx

# SQLite allows 500 terms in a compound SELECT; stay well below.
_TYPES_PER_QUERY = 100
# Extra candidates fetched per type, for those skipped because their key is full.
_MARGIN = 32
_MAX_PAGES = 50
_MAX_EXCLUDED_KEYS = 400
_PRUNE_AFTER: Micros = 3_600 * 1_000_000  # rate windows are shorter than this

UNLIMITED = math.inf


@dataclass
class _Scope:
    """Room left under one set of limits (a type's or a key's) in this transaction."""

    name: str  # 'type:<name>' or 'key:<key>'
    limits: ConcurrencyLimits
    running: int = 0
    window_starts: int = 0
    oldest_start: Micros | None = None

    def room(self) -> float:
        room = UNLIMITED
        if self.limits.max_running > 0:
            room = min(room, self.limits.max_running - self.running)
        if self.limits.max_per_second > 0:
            count, _ = self.limits.rate_window()
            room = min(room, count - self.window_starts)
        return room

    def rate_bound(self) -> bool:
        if self.limits.max_per_second <= 0:
            return False
        count, _ = self.limits.rate_window()
        return self.window_starts >= count

    def frees_at(self) -> Micros | None:
        """When the rate window lets the next start through (if the rate is what binds)."""
        if not self.rate_bound() or self.oldest_start is None:
            return None
        return self.oldest_start + self.limits.rate_window()[1]

    def took(self, now: Micros) -> None:
        self.running += 1
        self.window_starts += 1
        if self.oldest_start is None:
            self.oldest_start = now


@dataclass(frozen=True)
class Candidate:
    task_id: str
    claim_key: Micros
    type: str
    key: str


@dataclass
class ClaimLimits:
    paused: set[str]
    types: dict[str, _Scope]
    keys: dict[str, _Scope | None] = field(default_factory=dict)  # None: no limits
    starts: list[tuple[str, Micros]] = field(default_factory=list)
    retry_at: Micros | None = None

    @classmethod
    async def load(cls, tx: Tx) -> ClaimLimits:
        async with tx.conn.execute(
            "SELECT name, paused, max_running, max_per_second FROM task_types "
            "WHERE paused = 1 OR max_running > 0 OR max_per_second > 0"
        ) as cursor:
            rows = list(await cursor.fetchall())
        limits = cls(paused={r[0] for r in rows if r[1]}, types={})
        for name, _paused, max_running, max_per_second in rows:
            scope_limits = ConcurrencyLimits(max_running, max_per_second)
            if scope_limits.is_set:
                limits.types[name] = await _load_scope(tx, f"type:{name}", scope_limits)
        return limits

    async def key_scope(self, tx: Tx, key: str) -> _Scope | None:
        if key not in self.keys:
            async with tx.conn.execute(
                "SELECT max_running, max_per_second FROM concurrency_keys WHERE key = ?", (key,)
            ) as cursor:
                row = await cursor.fetchone()
            limits = ConcurrencyLimits(row[0], row[1]) if row else ConcurrencyLimits()
            self.keys[key] = await _load_scope(tx, f"key:{key}", limits) if limits.is_set else None
        return self.keys[key]

    def full_keys(self) -> list[str]:
        full = [k for k, scope in self.keys.items() if scope is not None and scope.room() <= 0]
        return sorted(full)[:_MAX_EXCLUDED_KEYS]

    def note_throttled(self, scope: _Scope) -> None:
        frees = scope.frees_at()
        if frees is not None and (self.retry_at is None or frees < self.retry_at):
            self.retry_at = frees

    def record(self, tx: Tx, candidate: Candidate) -> None:
        for scope in (self.types.get(candidate.type), self.keys.get(candidate.key)):
            if scope is not None:
                scope.took(tx.now)
                if scope.limits.max_per_second > 0:
                    self.starts.append((scope.name, tx.now))

    async def save(self, tx: Tx) -> None:
        if self.starts:
            await tx.conn.executemany(
                "INSERT INTO rate_starts (scope, started_at) VALUES (?, ?)", self.starts
            )
            self.starts = []
            await tx.conn.execute(
                "DELETE FROM rate_starts WHERE started_at < ?", (tx.now - _PRUNE_AFTER,)
            )


async def _load_scope(tx: Tx, name: str, limits: ConcurrencyLimits) -> _Scope:
    scope = _Scope(name, limits)
    kind, _, value = name.partition(":")
    if limits.max_running > 0:
        column = "type" if kind == "type" else "concurrency_key"
        index = "tasks_type_state" if kind == "type" else "tasks_running_key"
        extra = "" if kind == "type" else " AND concurrency_key != ''"
        async with tx.conn.execute(
            f"SELECT count(*) FROM tasks INDEXED BY {index} "
            f"WHERE state = 3 AND {column} = ?{extra}",
            (value,),
        ) as cursor:
            row = await cursor.fetchone()
        scope.running = int(row[0]) if row else 0
    if limits.max_per_second > 0:
        _, window = limits.rate_window()
        async with tx.conn.execute(
            "SELECT count(*), min(started_at) FROM rate_starts WHERE scope = ? AND started_at > ?",
            (name, tx.now - window),
        ) as cursor:
            row = await cursor.fetchone()
        if row:
            scope.window_starts, scope.oldest_start = int(row[0]), row[1]
    return scope


_ONE_TYPE = (
    "SELECT * FROM (SELECT id, claim_key, type, concurrency_key FROM tasks INDEXED BY tasks_claim "
    "WHERE state = 2 AND type = ? AND claim_key <= ? AND due_at <= ? "
    "AND (claim_key, id) > (?, ?){exclude} ORDER BY claim_key, id LIMIT ?)"
)


async def choose(
    tx: Tx, request: ClaimRequest, limits: ClaimLimits, dry: set[str]
) -> list[Candidate]:
    """Up to ``request.limit`` due tasks of the request's types, within every limit.

    ``dry`` holds the types known, in this transaction, to have nothing more to lease: their
    candidates were all seen and either taken or held back by a limit (and limits only
    tighten as a claim goes on). They are not queried again, and this call adds the types it
    finds dry. A dispatch round claims for every connected session in one transaction:
    without this, sessions serving overlapping types would each query types that an earlier
    session already emptied.
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
    tx: Tx,
    caps: dict[str, float],
    positions: dict[str, tuple[Micros, str]],
    remaining: int,
    full_keys: Sequence[str],
) -> tuple[list[Candidate], set[str]]:
    """The next candidates of each capped type after its position, merged in claim order.

    Answers them and the types that have no more candidates.
    """
    exclude = f" AND concurrency_key NOT IN ({placeholders(len(full_keys))})" if full_keys else ""
    names = sorted(caps)
    page: list[Candidate] = []
    exhausted: set[str] = set()
    for start in range(0, len(names), _TYPES_PER_QUERY):
        chunk = names[start : start + _TYPES_PER_QUERY]
        sql = " UNION ALL ".join([_ONE_TYPE.format(exclude=exclude)] * len(chunk))
        params: list[object] = []
        wanted: dict[str, int] = {}
        for name in chunk:
            wanted[name] = int(min(caps[name], remaining)) + _MARGIN
            after_key, after_id = positions[name]
            params.extend([name, tx.now, tx.now, after_key, after_id, *full_keys, wanted[name]])
        async with tx.conn.execute(sql, params) as cursor:
            rows = [Candidate(r[0], r[1], r[2], r[3]) for r in await cursor.fetchall()]
        got: dict[str, int] = {}
        for candidate in rows:
            got[candidate.type] = got.get(candidate.type, 0) + 1
        exhausted.update(name for name in chunk if got.get(name, 0) < wanted[name])
        page.extend(rows)
    page.sort(key=lambda c: (c.claim_key, c.task_id))
    return page, exhausted
