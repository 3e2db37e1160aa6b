"""Tracing's options and the pure pieces of propagation (no sockets, no exporter)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator_client.tracing import (
    context_from_carrier,
    otlp_traces_url,
    outgoing_trace_metadata,
)
from scheduler_service.api.codec import lease_message
from scheduler_service.config import SchedulerConfig
from scheduler_service.domain.model import Lease
from scheduler_service.tracing import SchedulerTracing, lease_trace_context, traced_worker_args
from worker_service.config import WorkerConfig

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("", ""),
        ("  ", ""),
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/v1/traces", "https://otel.example/v1/traces"),
        ("https://otel.example/tenant-a", "https://otel.example/tenant-a/v1/traces"),
    ],
)
def test_the_endpoint_is_a_base_url_and_v1_traces_is_added_once(given: str, url: str) -> None:
    assert otlp_traces_url(given) == url


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("collector:4318", "must be an http:// or https:// URL"),
        ("grpc://collector:4317", "must be an http:// or https:// URL"),
        ("http://:4318", "must be an http:// or https:// URL"),
        ("http://collector:port", "bad port"),
        ("http://collector:4318/?x=1", "query or fragment"),
    ],
)
def test_a_bad_endpoint_says_what_is_wrong(given: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        otlp_traces_url(given)


def test_both_services_read_the_endpoint_from_the_flag_or_their_variable() -> None:
    env = {"ORCHESTRATOR_OTLP_ENDPOINT": "http://collector:4318"}
    scheduler = SchedulerConfig.from_args([], env)
    worker = WorkerConfig.from_args([], env)
    assert scheduler.otlp_endpoint == worker.otlp_endpoint == "http://collector:4318/v1/traces"
    assert (scheduler.service_name, worker.service_name) == (
        "orchestrator-scheduler",
        "orchestrator-worker",
    )
    flagged = WorkerConfig.from_args(["--otlp-endpoint", "", "--service-name", "billing"], env)
    assert (flagged.otlp_endpoint, flagged.service_name) == ("", "billing")


def test_the_standard_otel_variable_alone_does_not_turn_tracing_on() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert SchedulerConfig.from_args([], env).otlp_endpoint == ""
    assert WorkerConfig.from_args([], env).otlp_endpoint == ""


def test_a_bad_endpoint_variable_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        SchedulerConfig.from_args([], {"ORCHESTRATOR_OTLP_ENDPOINT": "collector:4318"})
    assert exited.value.code == 2
    assert "ORCHESTRATOR_OTLP_ENDPOINT" in capsys.readouterr().err


def test_the_development_worker_traces_to_the_same_collector_unless_told_otherwise() -> None:
    on = SchedulerConfig(otlp_endpoint="http://c:4318/v1/traces", worker_args=("--slots=2",))
    assert traced_worker_args(on) == ("--slots=2", "--otlp-endpoint=http://c:4318/v1/traces")
    own = SchedulerConfig(
        otlp_endpoint="http://c:4318/v1/traces", worker_args=("--otlp-endpoint=",)
    )
    assert traced_worker_args(own) == ("--otlp-endpoint=",)
    assert traced_worker_args(SchedulerConfig(worker_args=("--slots=2",))) == ("--slots=2",)


def _lease(trace_context: str) -> Lease:
    return Lease("l1", "t1", "sum2", "{}", 1, 3, 1_000_000, 0, {}, trace_context=trace_context)


def test_a_lease_carries_the_stored_context_and_nothing_when_there_is_none() -> None:
    stored = json.dumps({"traceparent": PARENT, "tracestate": "k=v"})
    assert dict(lease_message(_lease(stored)).trace_context) == {
        "traceparent": PARENT,
        "tracestate": "k=v",
    }
    assert dict(lease_message(_lease("")).trace_context) == {}


@pytest.mark.parametrize("stored", ["not json", "[1]", '{"baggage":"x","traceparent":3}'])
def test_a_stored_context_that_is_not_one_is_dropped_not_sent(stored: str) -> None:
    assert lease_trace_context(stored) == {}


def test_the_client_sends_the_active_spans_context_and_nothing_without_one() -> None:
    assert outgoing_trace_metadata() == ()
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("caller") as span:
        metadata = dict(outgoing_trace_metadata())
    context = span.get_span_context()
    # Flags: sampled (01), and the SDK's trace ids are random (02, W3C level 2).
    assert metadata == {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-03"}
    assert outgoing_trace_metadata() == ()


def test_a_malformed_traceparent_starts_a_new_trace() -> None:
    assert (
        not trace.get_current_span(context_from_carrier({"traceparent": "junk"}))
        .get_span_context()
        .is_valid
    )
    parent = trace.get_current_span(context_from_carrier({"traceparent": PARENT}))
    assert f"{parent.get_span_context().trace_id:032x}" == PARENT.split("-")[1]


def test_a_traced_lease_gets_a_dispatch_span_for_its_wait_and_an_untraced_one_none() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stored = json.dumps({"traceparent": PARENT})
    traced = replace(_lease(stored), due_at=1_000_000, attempt=2)
    SchedulerTracing(provider).leases_sent("w1", [traced, _lease("")], now=1_250_000)
    (span,) = exporter.get_finished_spans()
    assert span.name == "dispatch sum2"
    assert span.parent is not None
    assert f"{span.parent.trace_id:032x}-{span.parent.span_id:016x}" == "-".join(
        PARENT.split("-")[1:3]
    )
    assert (span.start_time, span.end_time) == (1_000_000_000, 1_250_000_000)  # ns
    assert dict(span.attributes or {}) == {
        "task.id": "t1",
        "task.type": "sum2",
        "task.attempt": 2,
        "lease.id": "l1",
        "worker.id": "w1",
    }
