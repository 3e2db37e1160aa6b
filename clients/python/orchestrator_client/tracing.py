"""Tracing shared by the client, the scheduler and the worker: W3C trace context in gRPC
metadata and on leases, and the OTLP/HTTP export of the services' spans.

OpenTelemetry is optional (the ``tracing`` extra). Nothing here imports it at module import:
the client looks for it only when the calling program has imported it itself (without that,
no span can be active, so there is nothing to propagate), and the services import it only
when ``--otlp-endpoint`` is given, failing at start-up with :class:`TracingUnavailable` if
it is missing. With tracing off the hot paths cost nothing: no span objects, no copies.

The context travels as W3C Trace Context (``traceparent``, ``tracestate``), the one format
every OpenTelemetry SDK reads, whatever propagators the calling program configured.
"""

from __future__ import annotations

import argparse
import sys
import threading
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider

#: The metadata keys (and ``Lease.trace_context`` keys) that carry a trace context.
TRACE_CONTEXT_KEYS = ("traceparent", "tracestate")
#: Where an OTLP/HTTP receiver takes spans, below the endpoint's base URL.
OTLP_TRACES_PATH = "/v1/traces"
#: How often the services hand finished spans to the exporter (the SDK's default is 5 s;
#: shorter, so that a trace shows up while someone is still looking at the task).
EXPORT_DELAY_SECONDS = 1.0
#: How long a service waits on its way out for its last spans to be exported. The exporter
#: retries an unreachable collector for up to 10 s; a collector that is down must not hold
#: up a graceful shutdown that long.
SHUTDOWN_EXPORT_SECONDS = 2.0

_INSTALL_HINT = "pip install 'task-orchestrator[tracing]'"


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but OpenTelemetry is not installed."""


def otlp_traces_url(text: str) -> str:
    """The OTLP/HTTP traces URL for an ``--otlp-endpoint`` value; empty stays empty (off).

    Takes the collector's base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does
    (``http://collector:4318`` becomes ``http://collector:4318/v1/traces``); a URL that
    already ends in ``/v1/traces`` is kept. Raises ``ValueError`` naming what is wrong.
    """
    text = text.strip()
    if not text:
        return ""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, got {text!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"has a bad port: {text!r}") from None
    if parts.query or parts.fragment:
        raise ValueError(f"must not have a query or fragment, got {text!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(OTLP_TRACES_PATH):
        path += OTLP_TRACES_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _otlp_endpoint_option(text: str) -> str:
    try:
        return otlp_traces_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_tracing_options(group: argparse._ActionsContainer, *, service_name: str) -> None:
    """``--otlp-endpoint`` and ``--service-name``, the same for the scheduler and the worker.

    ``group`` is a parser or argument group of :class:`~.envargs.EnvArgumentParser`, so
    both read ``ORCHESTRATOR_*`` variables. Only ``ORCHESTRATOR_OTLP_ENDPOINT`` turns
    tracing on: the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``, often set for a whole host or
    container, does not, so that this service exports only when told to.
    """
    group.add_argument(
        "--otlp-endpoint",
        type=_otlp_endpoint_option,
        default="",
        metavar="URL",
        help="trace with OpenTelemetry, exporting spans over OTLP/HTTP to this collector "
        "(base URL, e.g. http://127.0.0.1:4318; /v1/traces is added); empty: off. Needs the "
        "'tracing' extra",
    )
    group.add_argument(
        "--service-name",
        default=service_name,
        help="the service.name of this process's spans (with --otlp-endpoint)",
    )


def outgoing_trace_metadata() -> tuple[tuple[str, str], ...]:
    """``traceparent``/``tracestate`` metadata for the span active in the caller, or nothing.

    Costs a dictionary lookup when the program never imported OpenTelemetry.
    """
    if "opentelemetry.trace" not in sys.modules:
        return ()
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace.get_current_span().get_span_context().is_valid:
        return ()
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return tuple((key, carrier[key]) for key in TRACE_CONTEXT_KEYS if carrier.get(key))


def context_from_carrier(carrier: Mapping[str, str]) -> Context:
    """The OpenTelemetry context whose parent is the W3C context in ``carrier`` (a root
    context when it holds none, or a malformed one)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(carrier)


def current_carrier() -> dict[str, str]:
    """The W3C context of the current span, as ``traceparent`` (and ``tracestate``)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return {key: carrier[key] for key in TRACE_CONTEXT_KEYS if carrier.get(key)}


def start_tracer_provider(
    traces_url: str,
    *,
    service_name: str,
    instance_id: str,
    export_delay: float = EXPORT_DELAY_SECONDS,
) -> TracerProvider:
    """A tracer provider that batches spans to the OTLP/HTTP receiver at ``traces_url``.

    The caller owns it: :func:`stop_tracer_provider` exports what is left (call it on the
    way out; nothing does at exit otherwise). It is not made the global provider here; a
    worker does that, so that handlers' own spans join the trace. The exporter also reads
    the standard ``OTEL_EXPORTER_OTLP_*`` variables for what this does not set (headers,
    certificates, timeout). Raises
    :class:`TracingUnavailable` when the ``tracing`` extra is not installed.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise TracingUnavailable(
            f"--otlp-endpoint needs OpenTelemetry, which is not installed ({exc.name} is "
            f"missing): {_INSTALL_HINT}"
        ) from None
    resource = Resource.create({"service.name": service_name, "service.instance.id": instance_id})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=traces_url),
            schedule_delay_millis=export_delay * 1000,
        )
    )
    return provider


def stop_tracer_provider(
    provider: TracerProvider, timeout: float = SHUTDOWN_EXPORT_SECONDS
) -> bool:
    """Export the spans still buffered and stop, waiting at most ``timeout`` seconds (it
    blocks: run it off the event loop). False when the export did not finish in time; the
    rest is dropped with the process (the exporter's threads do not hold its exit)."""
    stopping = threading.Thread(target=provider.shutdown, name="otlp-shutdown", daemon=True)
    stopping.start()
    stopping.join(timeout)
    return not stopping.is_alive()
