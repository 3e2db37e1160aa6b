"""The task types the scheduler knows: every type a worker ever declared, plus configured ones.

Creating a task of an unknown type is refused (so a typo never waits forever); a known
type with no worker connected right now is accepted and waits.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..domain.errors import InvalidArgument
from ..store.base import TaskStore

_MAX_LISTED = 50


class KnownTaskTypes:
    """A cache of the ``task_types`` table, refreshed when a name is not in it.

    Another scheduler process may have registered a type since this one last looked, so a
    miss re-reads the table before refusing.
    """

    def __init__(self, store: TaskStore) -> None:
        self._store = store
        self._names: set[str] = set()

    async def load(self) -> None:
        self._names = await self._store.task_type_names()

    def add(self, names: Iterable[str]) -> None:
        self._names.update(names)

    async def require(self, names: Iterable[tuple[str, str]]) -> None:
        """Raise InvalidArgument naming the field of the first unknown type.

        ``names`` are ``(field, type)`` pairs, e.g. ``("tasks[3].type", "fooo")``.
        """
        pairs = list(names)
        if all(name in self._names for _, name in pairs):
            return
        await self.load()
        for field, name in pairs:
            if name not in self._names:
                known = sorted(self._names)
                listed = ", ".join(known[:_MAX_LISTED]) or "(none yet: start a worker)"
                if len(known) > _MAX_LISTED:
                    listed += f", … ({len(known)} in all)"
                raise InvalidArgument(field, f"unknown task type {name!r}; known types: {listed}")
