"""Progress reports of running handlers, as the scripted scheduler receives them."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from orchestrator.v1 import worker_service_pb2 as pb
from tests.integration.worker.conftest import StartWorker
from tests.integration.worker.doubles import FakeStream, ScriptedServer, lease
from worker_service import TaskContext, handler
from worker_service.registry import HandlerRegistry

Outcome = pb.ResultOutcome
#: How long the scheduler keeps listening after the result for anything that follows it.
QUIET = 0.3


def registry() -> HandlerRegistry:
    @handler("steps")
    async def steps(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        for percent in (10, 50, 90):
            ctx.report_progress(percent, f"at {percent}%")
        return {"done": True}

    @handler("chatty")
    async def chatty(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        count = 0
        while loop.time() - start < 0.3:
            for _ in range(100):
                count += 1
                ctx.report_progress(min(count / 100, 99.0), details={"count": count})
            await asyncio.sleep(0)
        return {"count": count}

    @handler("late")
    async def late(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        ctx.report_progress(50)
        # Reports arriving after the result: from the loop and from a leftover thread.
        asyncio.get_running_loop().call_later(0.05, ctx.report_progress, 99)
        threading.Timer(0.05, ctx.report_progress, args=(98,)).start()
        return {}

    @handler("threaded")
    def threaded(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        ctx.report_progress(25, "a quarter", {"rows": 250})
        ctx.report_progress(75, "three quarters", {"rows": 750})
        return {"rows": 1000}

    found = HandlerRegistry()
    for func in (steps, chatty, late, threaded):
        found.add(func)
    return found


async def until_result(stream: FakeStream) -> tuple[list[pb.WorkerMessage], pb.TaskResult]:
    """Every message up to and including the first results; the first result."""
    seen: list[pb.WorkerMessage] = []
    while True:
        message = await stream.next()
        assert message is not None, "the worker closed the stream before the result"
        seen.append(message)
        if message.WhichOneof("message") == "results":
            return seen, message.results.results[0]


async def listen(stream: FakeStream, seconds: float) -> list[pb.WorkerMessage]:
    """Whatever the worker sends within ``seconds``."""
    seen: list[pb.WorkerMessage] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            message = await stream.next(within=left)
        except TimeoutError:
            break
        if message is None:
            break
        seen.append(message)
    return seen


def progress_of(messages: list[pb.WorkerMessage], lease_id: str) -> list[pb.TaskProgress]:
    return [
        update
        for message in messages
        if message.WhichOneof("message") == "progress"
        for update in message.progress.updates
        if update.lease_id == lease_id
    ]


def reports(messages: list[pb.WorkerMessage]) -> int:
    return sum(message.WhichOneof("message") == "progress" for message in messages)


async def test_quick_reports_are_coalesced_and_precede_the_result(
    scheduler: ScriptedServer, start_worker: StartWorker
) -> None:
    start_worker(registry())
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("s1", "steps"))

    before, result = await until_result(stream)
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
    assert 1 <= reports(before) <= 2
    updates = progress_of(before, "lease-s1")
    assert updates[-1].percent == 90
    assert updates[-1].message == "at 90%"
    assert not updates[-1].details_json
    assert progress_of(await listen(stream, QUIET), "lease-s1") == []


async def test_a_tight_loop_is_paced(scheduler: ScriptedServer, start_worker: StartWorker) -> None:
    start_worker(registry())
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("c1", "chatty"))

    before, result = await until_result(stream)
    count = json.loads(result.result_json)["count"]
    assert count > 1000
    # 0.3 s of reports: about one message per 100 ms, plus the one just before the result.
    assert 2 <= reports(before) <= 6
    last = progress_of(before, "lease-c1")[-1]
    assert json.loads(last.details_json) == {"count": count}


async def test_reports_after_the_result_are_dropped(
    scheduler: ScriptedServer, start_worker: StartWorker
) -> None:
    start_worker(registry())
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("l1", "late"))

    before, result = await until_result(stream)
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
    assert [u.percent for u in progress_of(before, "lease-l1")] == [50]
    after = await listen(stream, QUIET)
    assert reports(after) == 0


async def test_a_thread_handler_reports_from_its_thread(
    scheduler: ScriptedServer, start_worker: StartWorker
) -> None:
    start_worker(registry())
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("t1", "threaded"))

    before, result = await until_result(stream)
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
    last = progress_of(before, "lease-t1")[-1]
    assert (last.percent, last.message) == (75, "three quarters")
    assert json.loads(last.details_json) == {"rows": 750}
    assert progress_of(await listen(stream, QUIET), "lease-t1") == []


async def test_leases_report_side_by_side(
    scheduler: ScriptedServer, start_worker: StartWorker
) -> None:
    start_worker(registry(), slots=2)
    stream = await scheduler.servicer.next_stream()
    stream.lease(lease("a", "steps"), lease("b", "threaded"))

    seen: list[pb.WorkerMessage] = []
    results: list[pb.TaskResult] = []
    while len(results) < 2:
        message = await stream.next()
        assert message is not None
        seen.append(message)
        if message.WhichOneof("message") == "results":
            for done in message.results.results:
                results.append(done)
                assert progress_of(seen, done.lease_id), f"no progress before {done.lease_id}"
    seen.extend(await listen(stream, QUIET))
    for done in results:
        index = next(
            i
            for i, message in enumerate(seen)
            if message.WhichOneof("message") == "results"
            and done.lease_id in {r.lease_id for r in message.results.results}
        )
        assert progress_of(seen[index + 1 :], done.lease_id) == []
    assert progress_of(seen, "lease-a")[-1].percent == 90
    assert progress_of(seen, "lease-b")[-1].percent == 75
