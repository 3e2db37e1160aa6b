"""The worker's OpenTelemetry span around each handler run (``--otlp-endpoint``; off by
default).

The span ``run <type>`` is the child of the lease's ``trace_context`` (the create's span on
the scheduler), so a client's create, the scheduler's ``CreateTask`` and every attempt's run
share one trace; a lease without a context starts a trace of its own. The span is current
while the handler runs, so a handler's own spans (``opentelemetry.trace.get_tracer(...)``,
the provider is the process's global one) are its children; process-pool handlers run in
another process and are not.

Built only when tracing is on (see :meth:`RunTracing.from_config`); with it off the runner
holds ``None`` and makes no span.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator_client.tracing import (
    SHUTDOWN_EXPORT_SECONDS,
    context_from_carrier,
    start_tracer_provider,
    stop_tracer_provider,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from .config import WorkerConfig

log = logging.getLogger(__name__)

#: Outcomes that end the span in error: the handler did not do its job.
_ERROR_OUTCOMES = frozenset({pb.RESULT_OUTCOME_FAILED, pb.RESULT_OUTCOME_TIMED_OUT})
#: Longest error text put on a span (a handler's message can be long; a span is no log).
MAX_STATUS_DESCRIPTION = 1024


class RunTracing:
    """Makes the worker's run spans; :meth:`shutdown` exports what is left."""

    def __init__(self, provider: TracerProvider, worker_id: str) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("worker_service")
        self._worker_id = worker_id

    @classmethod
    def from_config(cls, config: WorkerConfig) -> RunTracing | None:
        """The worker's tracing, or ``None`` when ``--otlp-endpoint`` is not given.

        Makes its provider the process's global one, for handlers' own spans. Raises
        :class:`~orchestrator_client.tracing.TracingUnavailable` when OpenTelemetry is
        not installed.
        """
        if not config.otlp_endpoint:
            return None
        provider = start_tracer_provider(
            config.otlp_endpoint,
            service_name=config.service_name,
            instance_id=config.worker_id,
        )
        from opentelemetry import trace

        trace.set_tracer_provider(provider)
        return cls(provider, config.worker_id)

    @contextmanager
    def run_span(self, lease: pb.Lease) -> Iterator[Span]:
        """The current span while ``lease``'s handler runs; end it with :meth:`finish`'s
        status set. An exception leaving the block (a bug in the runner) is recorded."""
        from opentelemetry.trace import SpanKind

        with self._tracer.start_as_current_span(
            f"run {lease.type}",
            context=context_from_carrier(lease.trace_context),
            kind=SpanKind.CONSUMER,
            attributes={
                "task.id": lease.task_id,
                "task.type": lease.type,
                "task.attempt": lease.attempt,
                "task.max_attempts": lease.max_attempts,
                "lease.id": lease.lease_id,
                "worker.id": self._worker_id,
            },
        ) as span:
            yield span

    @staticmethod
    def finish(span: Span, result: pb.TaskResult) -> None:
        """Put the attempt's outcome on its span: an error status for FAILED and TIMED_OUT
        (with the error), none for the others (CANCELLED and RETURNED are not the
        handler's failure)."""
        from opentelemetry.trace import Status, StatusCode

        outcome = pb.ResultOutcome.Name(result.outcome).removeprefix("RESULT_OUTCOME_")
        span.set_attribute("task.outcome", outcome)
        if result.outcome in _ERROR_OUTCOMES:
            if result.non_retryable:
                span.set_attribute("task.retryable", False)
            span.set_status(Status(StatusCode.ERROR, result.error[:MAX_STATUS_DESCRIPTION]))

    def shutdown(self) -> None:
        """Export the spans still buffered, for at most a few seconds (blocking)."""
        if not stop_tracer_provider(self._provider):
            log.warning(
                "the last spans were not exported in time; dropped",
                extra={"timeout_s": SHUTDOWN_EXPORT_SECONDS},
            )
