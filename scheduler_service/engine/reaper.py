"""Takes back leases whose worker went silent or whose attempt ran past its timeout."""

from __future__ import annotations

import asyncio
import logging

from ..domain.model import AttemptOutcome
from ..store.base import TaskStore
from .dispatcher import Dispatcher
from .metrics import SchedulerMetrics

log = logging.getLogger(__name__)


class LeaseReaper:
    """Every ``interval`` seconds, reclaim expired leases through the store.

    Any scheduler process sharing the database may reclaim any lease, so a crashed
    process's leases come back through the survivors. Fencing makes the race with a late
    result harmless: whichever commits first wins, the other is refused.
    """

    def __init__(
        self,
        store: TaskStore,
        dispatcher: Dispatcher,
        metrics: SchedulerMetrics,
        interval: float,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._interval = interval

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.reap_once()
            except Exception:
                log.exception("reclaiming expired leases failed; will retry")

    async def reap_once(self) -> int:
        ended = [e for e in await self._store.reclaim_expired() if e.accepted]
        if not ended:
            return 0
        self._metrics.attempts_ended(ended)
        timeouts = sum(1 for item in ended if item.outcome == AttemptOutcome.TIMED_OUT)
        for reason, count in (("timeout", timeouts), ("expired", len(ended) - timeouts)):
            if count:
                self._metrics.lease_expiries.labels(reason=reason).inc(count)
        for item in ended:
            reason = "timeout" if item.outcome == AttemptOutcome.TIMED_OUT else "expired"
            log.warning(
                "lease taken back",
                extra={"task_id": item.task_id, "lease_id": item.lease_id, "reason": reason},
            )
        # The worker may still be running them (a timeout, or a worker that was only slow).
        self._dispatcher.cancel_leases(ended, "lease taken back by the scheduler")
        self._dispatcher.wake()
        return len(ended)
