"""Tracing (``--otlp-endpoint``): one trace from a client's create through the scheduler (the
create, each lease's wait) to the worker's handler, exported over real OTLP/HTTP to a
receiver in this test; nothing of it when tracing is off, and a clear start-up error when
OpenTelemetry is missing.
"""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator.v1 import task_pb2
from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator.v1 import worker_service_pb2_grpc as pb_grpc
from orchestrator_client import AsyncClient, Client
from orchestrator_client.protocol import WORKER_PROTOCOL_VERSION
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.processes import SchedulerProcess
from tests.support.streams import read_message

WAIT = 20.0  # seconds: the most any single wait in these tests may take


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    span: Span

    @property
    def attributes(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for kv in self.span.attributes:
            value = kv.value
            out[kv.key] = getattr(value, value.WhichOneof("value") or "string_value")
        return out


class OtlpReceiver:
    """An OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf) keeping what it gets."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            service = next(
                (
                    kv.value.string_value
                    for kv in resource_spans.resource.attributes
                    if kv.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(ReceivedSpan(service, span) for span in scope_spans.spans)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def named(self, name: str, trace_id: bytes) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.span.name == name and s.span.trace_id == trace_id]


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    """Ask for it before ``cluster``, so that it outlives the processes exporting to it."""
    receiver = OtlpReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def client_tracer() -> tuple[TracerProvider, InMemorySpanExporter]:
    """The test's own tracer: the client side of the trace, as an application has it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_one_trace_runs_from_the_clients_create_to_the_workers_handler(
    receiver: OtlpReceiver, cluster: Cluster
) -> None:
    scheduler = await cluster.start_scheduler("--otlp-endpoint", receiver.url)
    await cluster.start_worker("--otlp-endpoint", receiver.url)
    provider, _ = client_tracer()
    tracer = provider.get_tracer("test")
    async with AsyncClient(scheduler.grpc_address) as client:
        with tracer.start_as_current_span("checkout") as parent:
            good = await client.create_task("sum2", {"first": 1, "second": 2})
            bad = await client.create_task("sum2", {"first": "one"}, max_attempts=1)
        for task_id in (good.id, bad.id):
            done = await client.wait_for_task(task_id, timeout=WAIT)
            assert done.state in (task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_FAILED)
    trace_id = parent.get_span_context().trace_id.to_bytes(16, "big")
    parent_id = parent.get_span_context().span_id.to_bytes(8, "big")

    def complete() -> bool:
        return all(
            len(receiver.named(name, trace_id)) == 2
            for name in ("CreateTask", "dispatch sum2", "run sum2")
        )

    await eventually(complete, timeout=WAIT, message="both creates and both runs exported")
    creates = receiver.named("CreateTask", trace_id)
    runs = {r.attributes["task.id"]: r for r in receiver.named("run sum2", trace_id)}
    dispatches = {d.attributes["task.id"]: d for d in receiver.named("dispatch sum2", trace_id)}
    for create in creates:
        assert create.service == "orchestrator-scheduler"
        assert create.span.kind == Span.SPAN_KIND_SERVER
        assert create.span.parent_span_id == parent_id  # the client's span
        run = runs[create.attributes["task.id"]]
        assert run.service == "orchestrator-worker"
        assert run.span.kind == Span.SPAN_KIND_CONSUMER
        assert run.span.parent_span_id == create.span.span_id  # the create's span
        assert run.attributes["task.type"] == "sum2"
        assert run.attributes["task.attempt"] == 1
        assert run.attributes["lease.id"]
        # The wait for a worker: a sibling of the run, ending when the lease left.
        dispatch = dispatches[create.attributes["task.id"]]
        assert dispatch.service == "orchestrator-scheduler"
        assert dispatch.span.parent_span_id == create.span.span_id
        assert dispatch.attributes["lease.id"] == run.attributes["lease.id"]
        assert dispatch.span.end_time_unix_nano <= run.span.start_time_unix_nano
    assert runs[good.id].attributes["task.outcome"] == "SUCCEEDED"
    assert runs[good.id].span.status.code != Status.STATUS_CODE_ERROR
    assert runs[bad.id].attributes["task.outcome"] == "FAILED"
    assert runs[bad.id].span.status.code == Status.STATUS_CODE_ERROR
    assert "first" in runs[bad.id].span.status.message


async def test_a_batch_shares_one_create_span_and_untraced_callers_get_a_trace_of_their_own(
    receiver: OtlpReceiver, cluster: Cluster
) -> None:
    scheduler = await cluster.start_scheduler("--otlp-endpoint", receiver.url)
    await cluster.start_worker("--otlp-endpoint", receiver.url, "--service-name", "billing-worker")
    async with AsyncClient(scheduler.grpc_address) as client:  # no span active: a root
        response = await client.batch_create_tasks(
            [{"type": "sum2", "payload": {"first": i, "second": 1}} for i in range(3)]
        )
        for task in response.tasks:
            await client.wait_for_task(task.id, timeout=WAIT)
    ids = {task.id for task in response.tasks}

    def runs() -> list[ReceivedSpan]:
        return [
            s
            for s in receiver.spans
            if s.span.name == "run sum2" and s.attributes.get("task.id") in ids
        ]

    await eventually(lambda: len(runs()) == 3, timeout=WAIT, message="three runs exported")
    batch = [s for s in receiver.spans if s.span.name == "BatchCreateTasks"]
    assert len(batch) == 1
    assert batch[0].span.parent_span_id == b""  # nobody traced the call: a new trace
    assert batch[0].attributes["task.count"] == 3
    for run in runs():
        assert run.service == "billing-worker"
        assert run.span.trace_id == batch[0].span.trace_id
        assert run.span.parent_span_id == batch[0].span.span_id


async def raw_worker_stream(
    cluster: Cluster, scheduler: SchedulerProcess
) -> grpc.aio.StreamStreamCall[pb.WorkerMessage, pb.SchedulerMessage]:
    """A worker stream for ``sum2`` driven by the test, welcomed and ready for a lease.
    (Start the scheduler with ``--task-types sum2``: the types a stream declares become
    known a moment after its welcome.)"""
    stream = pb_grpc.WorkerServiceStub(cluster.channel(scheduler)).Connect()
    hello = pb.WorkerHello(
        protocol_version=WORKER_PROTOCOL_VERSION,
        worker_id="raw",
        task_types=["sum2"],
        slots=1,
        hostname="test",
        version="test",
    )
    await stream.write(pb.WorkerMessage(hello=hello))
    welcome = await asyncio.wait_for(read_message(stream, pb.SchedulerMessage), WAIT)
    assert welcome.HasField("welcome")
    return stream


async def next_lease(
    stream: grpc.aio.StreamStreamCall[pb.WorkerMessage, pb.SchedulerMessage],
) -> pb.Lease:
    message = await asyncio.wait_for(read_message(stream, pb.SchedulerMessage), WAIT)
    (lease,) = message.leases.leases
    return lease


async def test_with_tracing_off_a_lease_carries_no_trace_context(cluster: Cluster) -> None:
    """The client sends its span's context, but a scheduler without ``--otlp-endpoint``
    neither stores nor forwards it."""
    scheduler = await cluster.start_scheduler("--task-types", "sum2")
    stream = await raw_worker_stream(cluster, scheduler)
    provider, _ = client_tracer()
    async with AsyncClient(scheduler.grpc_address) as client:
        with provider.get_tracer("test").start_as_current_span("caller"):
            task = await client.create_task("sum2", {"first": 1, "second": 2})
    lease = await next_lease(stream)
    assert lease.task_id == task.id
    assert dict(lease.trace_context) == {}
    stream.cancel()
    assert "opentelemetry" not in scheduler.own_stderr()


async def test_the_blocking_client_carries_the_callers_span_to_the_lease(
    receiver: OtlpReceiver, cluster: Cluster
) -> None:
    """``Client`` runs calls on a thread of its own; the caller's span still goes along."""
    scheduler = await cluster.start_scheduler(
        "--otlp-endpoint", receiver.url, "--task-types", "sum2"
    )
    stream = await raw_worker_stream(cluster, scheduler)
    provider, _ = client_tracer()

    def create() -> tuple[str, int]:
        with (
            Client(scheduler.grpc_address) as client,
            provider.get_tracer("test").start_as_current_span("caller") as span,
        ):
            task = client.create_task("sum2", {"first": 1, "second": 2})
        return task.id, span.get_span_context().trace_id

    task_id, trace_id = await asyncio.to_thread(create)
    lease = await next_lease(stream)
    assert lease.task_id == task_id
    version, lease_trace_id, _create_span_id, _flags = lease.trace_context["traceparent"].split("-")
    assert (version, lease_trace_id) == ("00", f"{trace_id:032x}")
    stream.cancel()


# Makes every `import opentelemetry...` fail, as on an installation without the extra.
_WITHOUT_OPENTELEMETRY = """
import importlib.abc, sys
class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Missing())
"""


def _run_without_opentelemetry(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_OPENTELEMETRY + code, *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def test_everything_imports_and_runs_untraced_without_opentelemetry() -> None:
    done = _run_without_opentelemetry(
        """
import scheduler_service.__main__, worker_service.__main__, orchestrator_client
from orchestrator_client.tracing import outgoing_trace_metadata
from scheduler_service.config import SchedulerConfig
from scheduler_service.tracing import SchedulerTracing
from worker_service.config import WorkerConfig
from worker_service.tracing import RunTracing
assert outgoing_trace_metadata() == ()
assert SchedulerTracing.from_config(SchedulerConfig()) is None
assert RunTracing.from_config(WorkerConfig()) is None
assert not [m for m in sys.modules if m.startswith("opentelemetry")]
print("ok")
"""
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize(("service", "status"), [("scheduler_service", 1), ("worker_service", 2)])
def test_asking_for_tracing_without_opentelemetry_is_a_clear_start_up_error(
    service: str, status: int, tmp_path: Path
) -> None:
    done = _run_without_opentelemetry(
        f"from {service}.__main__ import main; sys.exit(main(sys.argv[1:]))",
        "--otlp-endpoint",
        "http://127.0.0.1:4318",
        *(
            ["--database", str(tmp_path / "db"), "--listen", "127.0.0.1:0"]
            if service == "scheduler_service"
            else []
        ),
    )
    assert done.returncode == status, done.stderr
    assert "--otlp-endpoint needs OpenTelemetry" in done.stderr
    assert "pip install 'task-orchestrator[tracing]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_endpoint_is_refused_at_start_naming_the_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker_service", "--otlp-endpoint", "collector:4318"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 2
    assert "--otlp-endpoint" in done.stderr
    assert "must be an http:// or https:// URL" in done.stderr
