"""Removes finished tasks past their retention, in small batches, so the file stops growing."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..domain.retention import RetentionPolicy
from ..store.base import TaskStore
from .metrics import SchedulerMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneRound:
    """What one round removed."""

    tasks: int
    tombstones: int


class RetentionPruner:
    """Every ``interval`` seconds, prune what the policy lets go, ``batch`` rows at a time.

    Each batch is one short write transaction through the store's group commit, so
    creates, claims and results queued meanwhile commit between two batches (the writer
    takes them with, or right after, the next one) and never wait for a whole round. A round
    ends when a batch of tasks removes nothing (the store may cut a batch of large tasks
    short), or a batch of deletion records comes back short. Any scheduler process
    sharing the database may prune; two pruning at once only share the work.
    """

    def __init__(
        self,
        store: TaskStore,
        metrics: SchedulerMetrics,
        policy: RetentionPolicy,
        interval: float,
        batch: int,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self._store = store
        self._metrics = metrics
        self._policy = policy
        self._interval = interval
        self._batch = batch

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.prune_once()
            except Exception:
                log.exception("pruning finished tasks failed; will retry")

    async def prune_once(self) -> PruneRound:
        tasks = tombstones = 0
        ages = self._policy.task_ages
        while ages:
            removed = await self._store.prune_finished(ages, self._batch)
            if not removed:  # not "short": a batch of large tasks stops early (time budget)
                break
            tasks += removed
            self._metrics.tasks_pruned.inc(removed)
            await asyncio.sleep(0)  # let the callers of the commit just made run first
        # Tombstones last: this round's prunes left theirs, which are not old yet.
        while self._policy.tombstones > 0:
            removed = await self._store.prune_tombstones(self._policy.tombstones, self._batch)
            tombstones += removed
            if removed < self._batch:
                break
            await asyncio.sleep(0)
        if tasks or tombstones:
            log.info("pruned finished tasks", extra={"tasks": tasks, "tombstones": tombstones})
        return PruneRound(tasks, tombstones)
