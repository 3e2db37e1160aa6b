"""Prometheus metrics of one scheduler process, in a registry of its own.

A registry per process object (not the global default) lets tests run several schedulers
in one interpreter; the HTTP side serves it at ``/metrics``.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector


class SchedulerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks_created = Counter(
            "orchestrator_tasks_created", "Tasks created", ["type"], registry=r
        )
        self.leases_granted = Counter(
            "orchestrator_leases_granted", "Leases handed to workers", registry=r
        )
        self.results = Counter(
            "orchestrator_results_accepted",
            "Attempt results accepted, by the task's state afterwards",
            ["outcome"],
            registry=r,
        )
        self.results_refused = Counter(
            "orchestrator_results_refused", "Results refused for a stale lease", registry=r
        )
        self.lease_expiries = Counter(
            "orchestrator_lease_expiries",
            "Leases taken back by the scheduler",
            ["reason"],
            registry=r,
        )
        self.connected_workers = Gauge(
            "orchestrator_connected_workers", "Worker streams connected to this process", registry=r
        )
        self.grpc_calls = Counter(
            "orchestrator_grpc_calls", "gRPC calls handled", ["method", "code"], registry=r
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


def _count_tasks() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # scraped outside the event loop
        return float("nan")
