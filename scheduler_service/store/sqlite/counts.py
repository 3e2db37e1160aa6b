"""The ``task_counts`` table, kept by the store's own writes.

Every write that adds, removes or changes the state or attempts of a task records the
change here; the transaction adds them all with one statement before it commits. That is
one statement per transaction instead of one trigger per task row (a trigger made bulk
creates four times slower). ``tests/integration/store`` recounts the tasks table after
mixed operations to prove the two never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from .inline import InlineConnection

_UPSERT = """
INSERT INTO task_counts (type, state, tasks, retries, exhausted) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (type, state) DO UPDATE SET
    tasks = tasks + excluded.tasks,
    retries = retries + excluded.retries,
    exhausted = exhausted + excluded.exhausted
"""

FAILED = 5


@dataclass(frozen=True, slots=True)
class Shape:
    """What of a task row the counts depend on."""

    type: str
    state: int
    attempts: int
    max_attempts: int


Delta = dict[tuple[str, int], list[int]]


class CountChanges:
    def __init__(self) -> None:
        self._delta: Delta = {}

    def _add(self, shape: Shape, sign: int) -> None:
        entry = self._delta.setdefault((shape.type, shape.state), [0, 0, 0])
        entry[0] += sign
        entry[1] += sign * max(shape.attempts - 1, 0)
        entry[2] += sign * int(shape.state == FAILED and shape.attempts >= shape.max_attempts)

    def added(self, shape: Shape) -> None:
        self._add(shape, 1)

    def removed(self, shape: Shape) -> None:
        self._add(shape, -1)

    def changed(self, old: Shape, new: Shape) -> None:
        self._add(old, -1)
        self._add(new, 1)

    def snapshot(self) -> Delta:
        return {key: list(value) for key, value in self._delta.items()}

    def restore(self, snapshot: Delta) -> None:
        """Forget the changes of a handler rolled back to its savepoint."""
        self._delta = snapshot

    def rows(self) -> list[tuple[str, int, int, int, int]]:
        """(type, state, tasks, retries, exhausted) to add, once: the changes are spent."""
        rows = [(t, s, *v) for (t, s), v in self._delta.items() if any(v)]
        self._delta = {}
        return rows  # type: ignore[return-value]

    async def save(self, conn: InlineConnection) -> None:
        rows = self.rows()
        if rows:
            await conn.executemany(_UPSERT, rows)
