"""Progress reports: validation, the hand-over from threads, coalescing and ordering on the
connection's writer."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from orchestrator.v1 import worker_service_pb2 as pb
from worker_service import connection as connection_module
from worker_service.connection import Connection
from worker_service.context import (
    MAX_PROGRESS_DETAILS_BYTES,
    HandlerSettings,
    TaskContext,
    progress_update,
)


def context(sink: Any = None) -> TaskContext:
    return TaskContext(
        task_id="T1",
        type="t",
        attempt=1,
        max_attempts=3,
        lease_id="L1",
        worker_id="w",
        settings=HandlerSettings(),
        progress_sink=sink,
    )


# Validation.


@pytest.mark.parametrize("percent", [0, 0.0, 42, 12.5, 100, 100.0])
def test_percent_from_0_to_100(percent: float) -> None:
    update = progress_update("L1", percent, "", None)
    assert update.HasField("percent")
    assert update.percent == float(percent)


def test_no_percent_means_unset() -> None:
    update = progress_update("L1", None, "only words", None)
    assert not update.HasField("percent")
    assert (update.lease_id, update.message, update.details_json) == ("L1", "only words", b"")


@pytest.mark.parametrize("percent", [-0.1, 100.01, 1e9, math.nan, math.inf, "50", True, [1]])
def test_percent_out_of_range_or_not_a_number(percent: Any) -> None:
    with pytest.raises(ValueError, match="percent"):
        context().report_progress(percent)


def test_a_long_message_is_cut_to_1000_characters() -> None:
    update = progress_update("L1", None, "x" * 5000, None)
    assert len(update.message) == 1000
    assert update.message.endswith("…")
    assert progress_update("L1", None, "y" * 1000, None).message == "y" * 1000


def test_message_must_be_text() -> None:
    with pytest.raises(ValueError, match="message"):
        context().report_progress(message=b"bytes")  # type: ignore[arg-type]


def test_details_are_canonical_json() -> None:
    update = progress_update("L1", 5, "", {"b": [1, 2], "a": "é"})
    assert update.details_json == '{"a":"é","b":[1,2]}'.encode()
    assert progress_update("L1", 5, "", {}).details_json == b"{}"


class Frozen(Mapping[str, Any]):
    """A mapping that is not a dict."""

    def __getitem__(self, key: str) -> Any:
        if key != "k":
            raise KeyError(key)
        return 1

    def __iter__(self) -> Any:
        return iter(["k"])

    def __len__(self) -> int:
        return 1


def test_any_mapping_will_do() -> None:
    assert json.loads(progress_update("L1", None, "", Frozen()).details_json) == {"k": 1}


@pytest.mark.parametrize(
    "details",
    [[1, 2], "text", 3, {"x": math.nan}, {"x": object()}, {"x": {1, 2}}, {1: "a", "b": 2}],
)
def test_details_must_be_a_json_object(details: Any) -> None:
    with pytest.raises(ValueError, match="details"):
        context().report_progress(10, details=details)


def test_details_at_most_64_kib() -> None:
    overhead = len('{"k":""}')
    fits = {"k": "x" * (MAX_PROGRESS_DETAILS_BYTES - overhead)}
    assert len(progress_update("L1", None, "", fits).details_json) == MAX_PROGRESS_DETAILS_BYTES
    with pytest.raises(ValueError, match="too large"):
        context().report_progress(details={"k": "x" * MAX_PROGRESS_DETAILS_BYTES})


def test_an_invalid_report_reaches_nobody() -> None:
    seen: list[pb.TaskProgress] = []
    with pytest.raises(ValueError):
        context(seen.append).report_progress(101)
    assert seen == []


# The hand-over to the sink.


def test_without_a_sink_reports_are_validated_then_dropped() -> None:
    context().report_progress(50, "half", {"n": 1})  # no error, nowhere to go


def test_without_a_loop_the_sink_is_called_at_once() -> None:
    seen: list[pb.TaskProgress] = []
    context(seen.append).report_progress(50, "half")
    assert [(u.lease_id, u.percent, u.message) for u in seen] == [("L1", 50.0, "half")]


async def test_on_the_loop_the_sink_is_called_at_once() -> None:
    seen: list[pb.TaskProgress] = []
    ctx = context(seen.append)
    ctx.report_progress(10)
    ctx.report_progress(20)
    assert [u.percent for u in seen] == [10, 20]


async def test_a_thread_hands_over_to_the_loop_keeping_only_the_latest() -> None:
    calls: list[tuple[float, int]] = []
    loop_thread = threading.get_ident()
    ctx = context(lambda update: calls.append((update.percent, threading.get_ident())))

    def work() -> None:
        for step in range(10_001):
            ctx.report_progress(step / 100)

    await asyncio.to_thread(work)
    await asyncio.sleep(0)  # the last hand-over runs
    assert calls[-1][0] == 100.0
    assert {thread for _, thread in calls} == {loop_thread}
    # Coalesced while the loop was busy elsewhere: far fewer calls than reports.
    assert len(calls) < 10_001
    percents = [percent for percent, _ in calls]
    assert percents == sorted(percents)


async def test_a_thread_report_and_the_thread_end_arrive_in_order() -> None:
    """A thread's last report reaches the sink before the loop learns the thread is done:
    the worker relies on it to send the last progress before the result."""
    order: list[str] = []
    ctx = context(lambda update: order.append(f"progress {update.percent:g}"))

    def work() -> None:
        ctx.report_progress(90)

    await asyncio.to_thread(work)
    order.append("done")
    assert order == ["progress 90", "done"]


def test_a_closed_loop_is_no_error() -> None:
    seen: list[pb.TaskProgress] = []
    loop = asyncio.new_event_loop()

    async def build() -> TaskContext:
        return context(seen.append)

    ctx = loop.run_until_complete(build())
    loop.close()
    ctx.report_progress(30)  # not on that loop, which is gone: dropped, no error
    assert seen == []


# The connection: coalescing, pacing, order against results.


class FakeCall:
    def __init__(self) -> None:
        self.written: list[pb.WorkerMessage] = []
        self.half_closed = False

    async def write(self, message: pb.WorkerMessage) -> None:
        self.written.append(message)

    async def done_writing(self) -> None:
        self.half_closed = True

    def cancel(self) -> bool:
        return True

    def kinds(self) -> list[str]:
        return [str(m.WhichOneof("message")) for m in self.written]


class Host:
    def on_leases(self, connection: Connection, leases: Any) -> None: ...

    def on_cancel(self, lease_ids: Any, reason: str) -> None: ...

    def on_drain(self, connection: Connection, grace: float | None, reason: str) -> None: ...

    def held_lease_ids(self) -> list[str]:
        return []


def progress(lease_id: str, percent: float) -> pb.TaskProgress:
    return pb.TaskProgress(lease_id=lease_id, percent=percent)


def updates(message: pb.WorkerMessage) -> list[tuple[str, float]]:
    return [(u.lease_id, u.percent) for u in message.progress.updates]


@pytest.fixture
async def conn() -> AsyncIterator[tuple[Connection, FakeCall]]:
    call = FakeCall()
    connection = Connection(call, pb.Welcome(session_id="s"), Host(), "w")  # type: ignore[arg-type]
    yield connection, call
    connection.abort()


async def test_only_the_latest_report_per_lease_in_one_message(
    conn: tuple[Connection, FakeCall],
) -> None:
    connection, _ = conn
    for percent in (10, 50, 90):
        connection.send_progress(progress("L1", percent))
    connection.send_progress(progress("L2", 30))
    [message] = connection._take()
    assert updates(message) == [("L1", 90), ("L2", 30)]
    assert connection._take() == []


async def test_at_most_one_report_per_interval(
    conn: tuple[Connection, FakeCall], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "PROGRESS_INTERVAL", 0.05)
    connection, _ = conn
    connection.send_progress(progress("L1", 10))
    assert [updates(m) for m in connection._take()] == [[("L1", 10)]]
    connection.send_progress(progress("L1", 20))
    connection.send_progress(progress("L1", 30))
    assert connection._take() == []  # too soon: a timer will wake the writer
    connection._wake.clear()
    await asyncio.wait_for(connection._wake.wait(), 1.0)
    assert [updates(m) for m in connection._take()] == [[("L1", 30)]]


async def test_waiting_progress_goes_just_before_results(
    conn: tuple[Connection, FakeCall],
) -> None:
    connection, _ = conn
    connection.send_progress(progress("L1", 10))
    connection._take()
    connection.send_progress(progress("L1", 90))  # inside the interval
    connection.send_progress(progress("L2", 40))
    connection.send_result(pb.TaskResult(lease_id="L1", task_id="T1"))
    connection.grant(1)
    messages = connection._take()
    assert [m.WhichOneof("message") for m in messages] == ["progress", "results"]
    assert updates(messages[0]) == [("L1", 90), ("L2", 40)]
    assert connection._progress_timer is None


async def test_the_writer_paces_a_tight_loop(
    conn: tuple[Connection, FakeCall], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "PROGRESS_INTERVAL", 0.05)
    connection, call = conn
    writer = asyncio.create_task(connection._write_loop())
    loop = asyncio.get_running_loop()
    start = loop.time()
    step = 0
    while loop.time() - start < 0.25:
        for _ in range(100):
            step += 1
            connection.send_progress(progress("L1", step / 1e6))
        await asyncio.sleep(0.001)
    connection.send_result(pb.TaskResult(lease_id="L1", task_id="T1"))
    await connection.close_sending()
    await writer
    kinds = call.kinds()
    assert kinds[-1] == "results"
    assert kinds[-2] == "progress"
    assert updates(call.written[-2]) == [("L1", step / 1e6)]  # the very last report
    # 0.25 s at one per 0.05 s, plus the one sent with the result.
    assert 2 <= kinds.count("progress") <= 8
    assert call.half_closed


async def test_closing_flushes_what_waits(conn: tuple[Connection, FakeCall]) -> None:
    connection, call = conn
    writer = asyncio.create_task(connection._write_loop())
    connection.send_progress(progress("L1", 10))
    await asyncio.sleep(0.01)
    connection.send_progress(progress("L1", 20))  # waits for the interval
    await connection.close_sending()
    await writer
    assert [updates(m) for m in call.written] == [[("L1", 10)], [("L1", 20)]]


async def test_nothing_is_queued_on_a_dead_stream(conn: tuple[Connection, FakeCall]) -> None:
    connection, _ = conn
    connection.send_progress(progress("L1", 10))
    connection._take()
    connection.send_progress(progress("L1", 20))
    connection._take()  # schedules the timer
    connection.abort()
    assert connection._progress == {}
    assert connection._progress_timer is None
    connection.send_progress(progress("L1", 30))
    assert connection._progress == {}


async def test_many_updates_are_split_like_results(
    conn: tuple[Connection, FakeCall], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "MAX_BATCH_RESULTS", 2)
    connection, _ = conn
    for index in range(5):
        connection.send_progress(progress(f"L{index}", index))
    assert [len(m.progress.updates) for m in connection._take()] == [2, 2, 1]
