"""TaskRunner with real handlers: async on the loop, sync in threads, cpu-bound in a
spawned process pool; outcomes, timeouts, cancellation, and when the slot is free."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.v1 import worker_service_pb2 as pb
from tests.integration.worker import cpu_handlers
from tests.integration.worker.doubles import WAIT, lease
from worker_service import HandlerSettings, PermanentError, TaskContext, handler
from worker_service.builtin import cpu
from worker_service.registry import HandlerRegistry
from worker_service.runner import Executors, Job, StopReason, TaskRunner

Outcome = pb.ResultOutcome


class Handlers:
    """Handlers that tell the test what they saw."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()
        self.thread_gate = threading.Event()
        self.thread_names: list[str] = []

    def registry(self) -> HandlerRegistry:
        me = self
        loop = asyncio.get_running_loop()

        @handler("echo")
        async def echo(payload: dict[str, Any], ctx: TaskContext) -> Any:
            return payload.get("return")

        @handler("boom")
        async def boom(payload: dict[str, Any], ctx: TaskContext) -> None:
            raise ValueError("nope")

        @handler("refuse")
        async def refuse(payload: dict[str, Any], ctx: TaskContext) -> None:
            raise PermanentError("payload field 'x' is required")

        @handler("forever")
        async def forever(payload: dict[str, Any], ctx: TaskContext) -> None:
            me.started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                assert ctx.cancelled.is_set()
                me.cancelled.set()
                raise

        @handler("blocking")
        def blocking(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            me.thread_names.append(threading.current_thread().name)
            loop.call_soon_threadsafe(me.started.set)
            me.thread_gate.wait(WAIT)
            return {"done": True}

        @handler("cooperative")
        def cooperative(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            loop.call_soon_threadsafe(me.started.set)
            deadline = time.monotonic() + WAIT
            while not ctx.cancelled.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)  # the handler's own polling, as a long sync job would
            return {"stopped_early": ctx.cancelled.is_set()}

        registry = HandlerRegistry()
        for func in (echo, boom, refuse, forever, blocking, cooperative):
            registry.add(func)
        registry.add(cpu.cpu_process)
        registry.add_module(cpu_handlers)
        return registry


@pytest.fixture(scope="module")
def executors() -> Iterator[Executors]:
    """One pool for the module: spawning processes is the slow part."""
    pools = Executors(threads=4, processes=1)
    yield pools
    pools.shutdown(wait=True)


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    handlers = Handlers()
    yield handlers
    handlers.thread_gate.set()


@pytest.fixture
async def runner(handlers: Handlers, executors: Executors, tmp_path: Path) -> TaskRunner:
    settings = HandlerSettings(outbox_dir=tmp_path, reports_dir=tmp_path)
    return TaskRunner(handlers.registry(), executors, settings, "w1")


async def run(runner: TaskRunner, message: pb.Lease) -> tuple[pb.TaskResult, Job]:
    job = runner.job(message)
    return await runner.execute(job), job


def payload(**values: Any) -> bytes:
    return json.dumps(values).encode()


async def test_success_and_return_values(runner: TaskRunner) -> None:
    result, job = await run(runner, lease("t", "echo", payload=payload(**{"return": {"b": 2}})))
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
    assert result.result_json == b'{"b":2}'
    assert job.ended.is_set()
    result, _ = await run(runner, lease("t", "echo", payload=payload(**{"return": 7})))
    assert result.result_json == b'{"value":7}'
    result, _ = await run(runner, lease("t", "echo"))
    assert result.result_json == b"{}"


async def test_failures(runner: TaskRunner) -> None:
    result, _ = await run(runner, lease("t", "boom"))
    assert (result.outcome, result.error, result.non_retryable) == (
        Outcome.RESULT_OUTCOME_FAILED,
        "ValueError: nope",
        False,
    )
    result, _ = await run(runner, lease("t", "refuse"))
    assert (result.error, result.non_retryable) == ("payload field 'x' is required", True)


async def test_unknown_type_and_bad_payload_fail_for_good(runner: TaskRunner) -> None:
    result, job = await run(runner, lease("t", "nope"))
    assert result.outcome == Outcome.RESULT_OUTCOME_FAILED and result.non_retryable
    assert "no handler for task type 'nope' on worker w1 (it serves " in result.error
    assert job.ended.is_set()
    result, _ = await run(runner, lease("t", "echo", payload=b"[1, 2]"))
    assert result.non_retryable
    assert result.error == "the payload must be a JSON object, got list"


async def test_an_async_handler_is_cancelled_at_its_timeout(
    runner: TaskRunner, handlers: Handlers
) -> None:
    result, job = await run(runner, lease("t", "forever", timeout=0.05))
    assert result.outcome == Outcome.RESULT_OUTCOME_TIMED_OUT
    assert result.error == "timed out after 0.05s"
    assert handlers.cancelled.is_set()
    assert job.ended.is_set()  # it unwound before the outcome was reported


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        (StopReason.CANCELLED, Outcome.RESULT_OUTCOME_CANCELLED),
        (StopReason.RETURNED, Outcome.RESULT_OUTCOME_RETURNED),
    ],
)
async def test_stop_requests(
    runner: TaskRunner, handlers: Handlers, reason: StopReason, outcome: int
) -> None:
    job = runner.job(lease("t", "forever"))
    execution = asyncio.create_task(runner.execute(job))
    await handlers.started.wait()
    job.request_stop(reason, "because")
    result = await execution
    assert (result.outcome, result.error) == (outcome, "because")
    assert handlers.cancelled.is_set()


async def test_sync_handlers_run_in_a_thread(runner: TaskRunner, handlers: Handlers) -> None:
    handlers.thread_gate.set()
    result, _ = await run(runner, lease("t", "blocking"))
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
    assert handlers.thread_names[0].startswith("handler")


async def test_a_thread_past_its_timeout_is_reported_but_keeps_its_slot(
    runner: TaskRunner, handlers: Handlers
) -> None:
    result, job = await run(runner, lease("t", "blocking", timeout=0.05))
    assert result.outcome == Outcome.RESULT_OUTCOME_TIMED_OUT
    assert job.ctx.cancelled.is_set()
    assert not job.ended.is_set()  # the thread still runs
    handlers.thread_gate.set()
    await asyncio.wait_for(job.ended.wait(), WAIT)


async def test_a_cooperative_thread_handler_sees_the_cancel(
    runner: TaskRunner, handlers: Handlers
) -> None:
    job = runner.job(lease("t", "cooperative"))
    execution = asyncio.create_task(runner.execute(job))
    await handlers.started.wait()
    job.request_stop(StopReason.CANCELLED, "deleted")
    assert (await execution).outcome == Outcome.RESULT_OUTCOME_CANCELLED
    await asyncio.wait_for(job.ended.wait(), WAIT)


async def test_cpu_process_in_the_process_pool(runner: TaskRunner) -> None:
    result, job = await run(runner, lease("c", "cpu_process", payload=payload(iterations=1000)))
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED, result.error
    expected = cpu.cpu_process({"iterations": 1000}, job.ctx.info)
    assert json.loads(result.result_json) == expected

    result, _ = await run(runner, lease("c", "whoami"))
    assert json.loads(result.result_json)["pid"] != os.getpid()


async def test_cpu_process_fails_on_purpose_and_retries(runner: TaskRunner) -> None:
    failing = payload(iterations=10, fail_attempts=1)
    result, _ = await run(runner, lease("c", "cpu_process", payload=failing, attempt=1))
    assert result.outcome == Outcome.RESULT_OUTCOME_FAILED
    assert not result.non_retryable
    assert result.error == "cpu_process fails on purpose, to test retries (attempt 1 of 3)"
    result, _ = await run(runner, lease("c", "cpu_process", payload=failing, attempt=2))
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED

    result, _ = await run(runner, lease("c", "cpu_process", payload=payload(iterations=-1)))
    assert result.non_retryable  # PermanentError crosses the process boundary
    assert "'iterations' must be between 0 and 20000000" in result.error


async def test_a_dead_pool_process_fails_the_task_and_the_pool_is_replaced(
    runner: TaskRunner,
) -> None:
    result, _ = await run(runner, lease("d", "die"))
    assert result.outcome == Outcome.RESULT_OUTCOME_FAILED
    assert result.error.startswith("BrokenProcessPool")
    assert not result.non_retryable
    result, _ = await run(runner, lease("c", "whoami"))
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED


def started_at(result: pb.TaskResult) -> float | None:
    """``result.started_at`` in seconds since the epoch, ``None`` when unset."""
    if not result.HasField("started_at"):
        return None
    return result.started_at.seconds + result.started_at.nanos / 1e9


async def timed(runner: TaskRunner, message: pb.Lease) -> tuple[pb.TaskResult, float, float]:
    """The result, with the wall clock before the lease was handed over and after."""
    before = time.time()
    result, _ = await run(runner, message)
    return result, before, time.time()


@pytest.mark.parametrize(
    ("task_type", "body", "seconds", "outcome"),
    [
        ("echo", payload(), None, Outcome.RESULT_OUTCOME_SUCCEEDED),
        ("boom", payload(), None, Outcome.RESULT_OUTCOME_FAILED),
        ("forever", payload(), 0.05, Outcome.RESULT_OUTCOME_TIMED_OUT),
        ("blocking", payload(), None, Outcome.RESULT_OUTCOME_SUCCEEDED),  # thread
        ("cpu_process", payload(iterations=10), None, Outcome.RESULT_OUTCOME_SUCCEEDED),
        # The child raises: its start crosses back on the exception.
        ("cpu_process", payload(fail_attempts=1), None, Outcome.RESULT_OUTCOME_FAILED),
    ],
)
async def test_started_at_lies_between_the_lease_and_the_result(
    runner: TaskRunner,
    handlers: Handlers,
    task_type: str,
    body: bytes,
    seconds: float | None,
    outcome: int,
) -> None:
    handlers.thread_gate.set()
    message = lease("t", task_type, payload=body, timeout=seconds)
    result, before, after = await timed(runner, message)
    assert result.outcome == outcome
    started = started_at(result)
    assert started is not None
    assert before - 1e-6 <= started <= after  # microseconds on the wire


async def test_a_process_handler_reports_when_its_child_started_it(runner: TaskRunner) -> None:
    """One pool process: the second job waits for the first, and says so."""
    first = runner.job(lease("first", "nap", payload=payload(seconds=0.3)))
    second = runner.job(lease("second", "whoami"))
    submitted = time.time()
    one, two = await asyncio.gather(runner.execute(first), runner.execute(second))
    assert one.outcome == two.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
    started_first, started_second = started_at(one), started_at(two)
    assert started_first is not None and started_second is not None
    assert started_second >= started_first + 0.3 - 1e-6  # the child's clock, not the submission
    assert started_second >= submitted + 0.25


async def test_never_started_handlers_have_no_started_at(runner: TaskRunner) -> None:
    result, _ = await run(runner, lease("t", "nope"))  # no handler
    assert started_at(result) is None
    result, _ = await run(runner, lease("t", "echo", payload=b"[1]"))  # bad payload
    assert started_at(result) is None

    # A process job still queued for the (one-process) pool when it is stopped never runs.
    ahead = [runner.job(lease("ahead", "nap", payload=payload(seconds=0.3)))]
    ahead += [runner.job(lease(f"queued{i}", "whoami")) for i in range(3)]
    running = [asyncio.create_task(runner.execute(job)) for job in ahead]
    last = runner.job(lease("last", "whoami"))
    execution = asyncio.create_task(runner.execute(last))
    await asyncio.sleep(0)
    last.request_stop(StopReason.RETURNED, "draining")
    result = await execution
    assert result.outcome == Outcome.RESULT_OUTCOME_RETURNED
    assert started_at(result) is None
    await asyncio.wait_for(last.ended.wait(), WAIT)
    for outcome in await asyncio.gather(*running):
        assert outcome.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
        assert started_at(outcome) is not None


async def test_a_process_handler_stopped_before_it_answers_reports_its_submission(
    runner: TaskRunner,
) -> None:
    """The child's own start comes back with its answer; without one (timed out while it
    runs), the time the job was handed to the pool stands in."""
    job = runner.job(lease("t", "nap", payload=payload(seconds=0.3), timeout=0.05))
    before = time.time()
    result = await runner.execute(job)
    assert result.outcome == Outcome.RESULT_OUTCOME_TIMED_OUT
    assert started_at(result) == pytest.approx(job.pool_submitted, abs=1e-6)
    assert before <= (job.pool_submitted or 0) <= time.time()
    await asyncio.wait_for(job.ended.wait(), WAIT)  # the child finishes its nap
