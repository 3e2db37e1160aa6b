"""Many streams' small writes gathered into one store call at a time.

A thousand worker streams each send a result or a heartbeat now and then. Handled one by
one, every message costs a task, a queued write, a future and its wake-ups, and a fleet
that beats in step turns that into a burst that stalls the event loop. A
:class:`Coalescer` keeps what arrives while its previous call is in flight and hands it
all to the next call: one store call per commit, however many streams spoke.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self, name: str, apply: Callable[[Sequence[T]], Awaitable[None]]) -> None:
        self._name = name
        self._apply = apply
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._running: asyncio.Task[None] | None = None

    def add(self, item: T) -> asyncio.Future[None]:
        """Queue ``item``; the future is done once the call that carried it has finished
        (with its exception if the call failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._running is None:
            self._running = asyncio.create_task(self._drain(), name=f"coalesce-{self._name}")
        return future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._apply([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._running = None
            for _, future in self._pending:  # only when cancelled: nobody will carry these
                if not future.done():
                    future.cancel()
            self._pending = []
