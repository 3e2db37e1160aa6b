"""The scheduler's OpenTelemetry spans (``--otlp-endpoint``; off by default).

A create (``CreateTask``, ``BatchCreateTasks``) gets a server span, the child of the W3C
trace context in the call's metadata when the client sent one (a root span otherwise). The
span's own context is stored with each task it created, and every lease of the task carries
it (``Lease.trace_context``), so that the worker's span around the handler is the create's
child: one trace from the client's create to each run, however long the task waits and on
whichever worker it runs. Each lease sent also gets a ``dispatch <type>`` span (the wait
from due to leased), a sibling of the run.

Built only when tracing is on, so that OpenTelemetry is imported only then; with tracing off
the servicer holds ``None`` and takes its plain path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from orchestrator_client.tracing import (
    SHUTDOWN_EXPORT_SECONDS,
    TRACE_CONTEXT_KEYS,
    context_from_carrier,
    current_carrier,
    start_tracer_provider,
    stop_tracer_provider,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from .config import SchedulerConfig
    from .domain.model import Lease, Micros, TaskRecord

log = logging.getLogger(__name__)

TASK_SERVICE = "orchestrator.v1.TaskService"


@dataclass(frozen=True)
class CreateSpan:
    """The span of one create call, as the servicer sees it."""

    span: Span
    #: The span's W3C context as JSON, stored with each task the call creates.
    trace_context: str

    def created(self, tasks: Sequence[TaskRecord]) -> None:
        """Name what the call answered: the task (one), or how many (a batch)."""
        if len(tasks) == 1:
            self.span.set_attributes({"task.id": tasks[0].id, "task.type": tasks[0].type})
        else:
            self.span.set_attribute("task.count", len(tasks))


class SchedulerTracing:
    """Starts the scheduler's spans; :meth:`shutdown` exports what is left."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("scheduler_service")

    @classmethod
    def from_config(cls, config: SchedulerConfig) -> SchedulerTracing | None:
        """The scheduler's tracing, or ``None`` when ``--otlp-endpoint`` is not given.

        Raises :class:`~orchestrator_client.tracing.TracingUnavailable` when it is given but
        OpenTelemetry is not installed.
        """
        if not config.otlp_endpoint:
            return None
        provider = start_tracer_provider(
            config.otlp_endpoint,
            service_name=config.service_name,
            instance_id=config.scheduler_id,
        )
        return cls(provider)

    @contextmanager
    def create_span(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Iterator[CreateSpan]:
        """A server span named ``method`` around a create, child of the caller's context.

        An exception leaving the block is recorded on the span, which then ends in error.
        """
        from opentelemetry.trace import SpanKind

        carrier = _incoming_carrier(context)
        with self._tracer.start_as_current_span(
            method,
            context=context_from_carrier(carrier),
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": TASK_SERVICE,
                "rpc.method": method,
            },
        ) as span:
            yield CreateSpan(span, json.dumps(current_carrier(), separators=(",", ":")))

    def leases_sent(self, worker_id: str, leases: Sequence[Lease], now: Micros) -> None:
        """A ``dispatch <type>`` span for each traced lease, child of its create's span: from
        when the attempt became due to ``now``, when its lease left for ``worker_id`` — the
        time the task waited for a worker, in the trace beside its run."""
        from opentelemetry.trace import SpanKind

        for lease in leases:
            if not lease.trace_context:
                continue
            end = now * 1000  # nanoseconds
            start = min(lease.due_at * 1000, end) if lease.due_at else end
            span = self._tracer.start_span(
                f"dispatch {lease.type}",
                context=context_from_carrier(lease_trace_context(lease.trace_context)),
                kind=SpanKind.INTERNAL,
                start_time=start,
                attributes={
                    "task.id": lease.task_id,
                    "task.type": lease.type,
                    "task.attempt": lease.attempt,
                    "lease.id": lease.lease_id,
                    "worker.id": worker_id,
                },
            )
            span.end(end_time=end)

    def shutdown(self) -> None:
        """Export the spans still buffered, for at most a few seconds (blocking)."""
        if not stop_tracer_provider(self._provider):
            log.warning(
                "the last spans were not exported in time; dropped",
                extra={"timeout_s": SHUTDOWN_EXPORT_SECONDS},
            )


def traced_worker_args(config: SchedulerConfig) -> tuple[str, ...]:
    """The ``--with-worker`` worker's arguments: with the scheduler's ``--otlp-endpoint``
    unless they name one, so that one command traces the whole way in development too."""
    args = config.worker_args
    if not config.otlp_endpoint or any(a.startswith("--otlp-endpoint") for a in args):
        return args
    return (*args, f"--otlp-endpoint={config.otlp_endpoint}")


def _incoming_carrier(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in TRACE_CONTEXT_KEYS:
            carrier[key] = value if isinstance(value, str) else value.decode(errors="replace")
    return carrier


def lease_trace_context(stored: str) -> dict[str, str]:
    """The ``Lease.trace_context`` map of a task's stored context (JSON), ``{}`` for none.

    What the store holds was written by :meth:`SchedulerTracing.create_span`; anything else
    (a database edited by hand) is dropped rather than sent.
    """
    try:
        carrier = json.loads(stored)
    except ValueError:
        return {}
    if not isinstance(carrier, dict):
        return {}
    return {k: v for k, v in carrier.items() if k in TRACE_CONTEXT_KEYS and isinstance(v, str)}
