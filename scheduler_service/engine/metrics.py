"""Prometheus metrics of one scheduler process, in a registry of its own.

A registry per process object (not the global default) lets tests run several schedulers
in one interpreter; the HTTP side serves it at ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.grpc_latency = Histogram(
            "orchestrator_grpc_call_seconds",
            "Time to answer unary gRPC calls",
            ["method"],
            registry=r,
        )
