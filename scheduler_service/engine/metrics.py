"""Prometheus metrics of one scheduler process, in a registry of its own.

A registry per process object (not the global default) lets tests run several schedulers
in one interpreter; the HTTP side serves it at ``/metrics``.

Counters and histograms are recorded where the engine already holds the facts (a claim's
leases, a batch of ended attempts), in memory: the hot path reads nothing from the
database for them, and a batch costs one ``inc(n)`` per label set, not one per task. The
queue depth is the exception: it comes from the store's per-type counts (the
``task_counts`` table), read once per scrape by :meth:`SchedulerMetrics.refresh_queue_depth`,
which the ``/metrics`` handler awaits right before it renders the registry (a custom
collector cannot await, and a periodic refresher would read the database when nobody
scrapes).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from ..domain.model import (
    WAITING_STATES,
    AttemptOutcome,
    EndedAttempt,
    Lease,
    Micros,
    TaskRecord,
    TaskState,
    TaskTypeRecord,
)

log = logging.getLogger(__name__)

#: Seconds, from a millisecond to an hour: a dispatch is a few ms when workers are free and
#: minutes behind a backlog; a run is whatever the handler does.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip

#: The states a task is shown in (the stored-only ones read as SCHEDULED or PENDING).
VISIBLE_STATES = (
    TaskState.SCHEDULED,
    TaskState.PENDING,
    TaskState.RUNNING,
    TaskState.SUCCEEDED,
    TaskState.FAILED,
    TaskState.CANCELLED,
)

_FINAL_OUTCOMES = {
    TaskState.SUCCEEDED: "succeeded",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
}


class SchedulerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks_created = Counter(
            "orchestrator_tasks_created",
            "Tasks created (by clients or schedules), by type; idempotent repeats not counted",
            ["type"],
            registry=r,
        )
        self.tasks_started = Counter(
            "orchestrator_tasks_started",
            "Attempts started: leases handed to workers by this process, by type",
            ["type"],
            registry=r,
        )
        self.tasks_finished = Counter(
            "orchestrator_tasks_finished",
            "Tasks that reached a final state through this process (an attempt's end, "
            "or a cancel), by type and outcome (succeeded, failed, cancelled)",
            ["type", "outcome"],
            registry=r,
        )
        self.task_retries = Counter(
            "orchestrator_task_retries",
            "Attempts that ended without finishing their task, which goes back to the queue "
            "for another attempt (after its backoff), by type",
            ["type"],
            registry=r,
        )
        self.results_refused = Counter(
            "orchestrator_results_refused", "Results refused for a stale lease", registry=r
        )
        self.tasks_pruned = Counter(
            "orchestrator_tasks_pruned",
            "Finished tasks removed by retention (--retain-succeeded and the like)",
            registry=r,
        )
        self.lease_expiries = Counter(
            "orchestrator_lease_expiries",
            "Leases taken back by the scheduler, by reason "
            "(timeout, expired: no heartbeat, worker_lost: its stream ended)",
            ["reason"],
            registry=r,
        )
        self.dispatch_latency = Histogram(
            "orchestrator_dispatch_latency_seconds",
            "From when an attempt was due (run_at, a backoff's end) to its lease being sent "
            "to a worker, by type",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.run_duration = Histogram(
            "orchestrator_task_run_duration_seconds",
            "From a lease being sent to its worker's accepted result, by type",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "orchestrator_queue_depth",
            "Tasks in the database by type and state, as of the scrape (scheduled, pending "
            "and running are the queue; the final states count what is kept until deleted)",
            ["type", "state"],
            registry=r,
        )
        self.connected_workers = Gauge(
            "orchestrator_connected_workers", "Worker streams connected to this process", registry=r
        )
        self.grpc_calls = Counter(
            "orchestrator_grpc_calls",
            "gRPC calls handled, by method and status code",
            ["method", "code"],
            registry=r,
        )
        # Process figures (RSS, open files, CPU) and the asyncio task count: what a soak
        # test watches for leaks.
        ProcessCollector(registry=r)
        self.asyncio_tasks = Gauge(
            "orchestrator_asyncio_tasks", "asyncio tasks alive in the scheduler", registry=r
        )
        self.asyncio_tasks.set_function(_count_tasks)
        self.grpc_latency = Histogram(
            "orchestrator_grpc_call_seconds",
            "Time to answer unary gRPC calls",
            ["method"],
            registry=r,
        )

    # -- recording, a batch at a time ----------------------------------------------------------

    def created(self, tasks: Sequence[TaskRecord]) -> None:
        """Tasks just created. One that got a cached result at once is born SUCCEEDED:
        it is finished too, without ever starting."""
        for type_name, count in Tally(task.type for task in tasks).items():
            self.tasks_created.labels(type=type_name).inc(count)
        born_final = Tally(
            (task.type, _FINAL_OUTCOMES[task.state])
            for task in tasks
            if task.state in _FINAL_OUTCOMES
        )
        for (type_name, outcome), count in born_final.items():
            self.tasks_finished.labels(type=type_name, outcome=outcome).inc(count)

    def leases_sent(self, leases: Sequence[Lease], now: Micros) -> None:
        """Leases sent to a worker at ``now``: attempts started, and how late each was."""
        for type_name, count in Tally(lease.type for lease in leases).items():
            self.tasks_started.labels(type=type_name).inc(count)
        for lease in leases:
            late = max(0, now - lease.due_at) / 1e6
            self.dispatch_latency.labels(type=lease.type).observe(late)

    def attempts_ended(self, ended: Iterable[EndedAttempt]) -> None:
        """Attempts the store ended (results, expiries, lost workers): the accepted ones
        either finished their task or leave it to be retried. A lease a draining worker
        handed back unstarted (``RETURNED``) is neither."""
        finished: Tally[tuple[str, str]] = Tally()
        retried: Tally[str] = Tally()
        for item in ended:
            if not item.accepted or item.new_state is None:
                continue
            outcome = _FINAL_OUTCOMES.get(item.new_state)
            if outcome is not None:
                finished[(item.type, outcome)] += 1
            elif item.new_state in WAITING_STATES and item.outcome != AttemptOutcome.RETURNED:
                retried[item.type] += 1
        for (type_name, outcome), count in finished.items():
            self.tasks_finished.labels(type=type_name, outcome=outcome).inc(count)
        for type_name, count in retried.items():
            self.task_retries.labels(type=type_name).inc(count)

    def cancelled(self, type_name: str) -> None:
        """A task cancelled by a caller (it may have been queued: no attempt ended)."""
        self.tasks_finished.labels(type=type_name, outcome="cancelled").inc()

    # -- the queue depth, read at scrape time ---------------------------------------------------

    def set_queue_depth(self, types: Sequence[TaskTypeRecord]) -> None:
        """Every known type gets every visible state, zeros included: a series that drops
        out when its count reaches zero would read as "unknown", not as "empty"."""
        self.queue_depth.clear()
        for record in types:
            for state in VISIBLE_STATES:
                self.queue_depth.labels(type=record.name, state=state.name.lower()).set(
                    record.counts.get(state, 0)
                )

    async def refresh_queue_depth(
        self, list_task_types: Callable[[], Awaitable[Sequence[TaskTypeRecord]]]
    ) -> None:
        """Read the per-type counts (``TaskStore.list_task_types``: the ``task_counts``
        table and one index range for what is not due yet, no scan of the tasks) and set
        the gauge. Should the read fail, the gauge is emptied rather than left stale."""
        try:
            types = await list_task_types()
        except Exception:
            log.exception("reading the queue depth for /metrics failed")
            self.queue_depth.clear()
            return
        self.set_queue_depth(types)


def _count_tasks() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # scraped outside the event loop
        return float("nan")
