"""AsyncClient against a real grpc.aio server: metadata, deadlines, retries, errors, streams."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import grpc
import pytest

import orchestrator_client as oc
from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from orchestrator_client._requests import create_task_request
from orchestrator_client.protocol import CLIENT_METADATA_KEY

if TYPE_CHECKING:
    from conftest import FakeScheduler

FAST = oc.RetryPolicy(retries=3, initial=0.001, maximum=0.01)


def client_for(scheduler: FakeScheduler, **kwargs: object) -> oc.AsyncClient:
    kwargs.setdefault("retries", FAST)
    return oc.AsyncClient(scheduler.target, **kwargs)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_client_id_and_extra_metadata_are_sent(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler, client_id="billing", metadata=[("x-trace", "42")]) as c:
        task = await c.create_task("foo")
    call = scheduler.script.calls_of("CreateTask")[0]
    assert call.metadata[CLIENT_METADATA_KEY] == "billing"
    assert call.metadata["x-trace"] == "42"
    assert task.client == "billing"


async def test_without_client_id_no_identity_is_sent(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        await client.create_task("foo")
    assert CLIENT_METADATA_KEY not in scheduler.script.calls[0].metadata


async def test_every_unary_call_has_the_deadline(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_FAILED)
    async with client_for(scheduler, timeout=5.0) as client:
        await client.create_task("foo")
        await client.get_task(task.id)
        await client.list_tasks()
        await client.retry_task(task.id)
        await client.cancel_task(task.id)
        await client.delete_tasks(types=["nothing"])
        await client.delete_task(task.id)
        await client.list_task_types()
        await client.list_workers()
        await client.get_stats()
        await client.explain_task((await client.create_task("foo")).id)
        await client.set_task_type_limits("foo", max_running=1)
    assert len(scheduler.script.calls) == 13
    for call in scheduler.script.calls:
        assert call.time_remaining is not None, call.method
        # gRPC rounds the deadline on the wire, so allow a little over the timeout.
        assert 0 < call.time_remaining <= 5.5, call.method


async def test_unavailable_is_retried_then_succeeds(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo")
    scheduler.script.failures["GetTask"] = [grpc.StatusCode.UNAVAILABLE] * 2
    async with client_for(scheduler) as client:
        got = await client.get_task(task.id)
    assert got.id == task.id
    assert len(scheduler.script.calls_of("GetTask")) == 3


async def test_unavailable_is_raised_once_the_retries_are_spent(scheduler: FakeScheduler) -> None:
    scheduler.script.failures["GetStats"] = [grpc.StatusCode.UNAVAILABLE] * 10
    async with client_for(scheduler, retries=oc.RetryPolicy(retries=2, initial=0.001)) as c:
        with pytest.raises(oc.Unavailable) as caught:
            await c.get_stats()
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert len(scheduler.script.calls_of("GetStats")) == 3


async def test_not_found_is_not_retried(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        with pytest.raises(oc.NotFound) as caught:
            await client.get_task("missing")
    assert "missing" in caught.value.details
    assert isinstance(caught.value.__cause__, grpc.aio.AioRpcError)
    assert len(scheduler.script.calls_of("GetTask")) == 1


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, oc.InvalidArgument),
        (grpc.StatusCode.DEADLINE_EXCEEDED, oc.DeadlineExceeded),
        (grpc.StatusCode.INTERNAL, oc.Internal),
    ],
)
async def test_other_codes_are_raised_typed_at_once(
    scheduler: FakeScheduler, code: grpc.StatusCode, error: type[oc.RPCError]
) -> None:
    scheduler.script.failures["CreateTask"] = [code]
    async with client_for(scheduler) as client:
        with pytest.raises(error):
            await client.create_task("foo")
    assert len(scheduler.script.calls_of("CreateTask")) == 1


async def test_unreachable_scheduler_is_unavailable() -> None:
    policy = oc.RetryPolicy(retries=1, initial=0.001)
    async with oc.AsyncClient(f"127.0.0.1:{free_port()}", retries=policy, timeout=5) as client:
        with pytest.raises(oc.Unavailable):
            await client.get_stats()


async def test_create_task_sends_the_fields(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        task = await client.create_task(
            "sum2",
            {"first": 1, "second": 2},
            delay=60,
            priority=5,
            timeout=30,
            group="g",
            idempotency_key="k",
            labels={"team": "billing"},
        )
    request = scheduler.script.calls_of("CreateTask")[0].request
    assert request.payload["second"] == 2
    assert request.HasField("run_at")
    assert request.timeout.seconds == 30
    assert (task.type, task.priority, task.group, task.idempotency_key) == ("sum2", 5, "g", "k")


async def test_batch_create(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        response = await client.batch_create_tasks(
            [{"type": "foo"}, task_service_pb2.CreateTaskRequest(type="bar")]
        )
    assert [task.type for task in response.tasks] == ["foo", "bar"]


async def test_list_filters_by_state_names(scheduler: FakeScheduler) -> None:
    scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_FAILED)
    scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    async with client_for(scheduler) as client:
        page = await client.list_tasks(states=["failed"], types=["foo"])
    assert [oc.state_name(task.state) for task in page.tasks] == ["FAILED"]
    request = scheduler.script.calls_of("ListTasks")[0].request
    assert list(request.states) == [task_pb2.TASK_STATE_FAILED]


async def test_iter_tasks_follows_the_pages(scheduler: FakeScheduler) -> None:
    created = [scheduler.script.add_task(type="foo").id for _ in range(5)]
    async with client_for(scheduler) as client:
        seen = [task.id async for task in client.iter_tasks(page_size=2)]
    assert seen == list(reversed(created))
    assert len(scheduler.script.calls_of("ListTasks")) == 3


async def test_bad_state_fails_before_any_call(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        with pytest.raises(ValueError, match="unknown task state"):
            await client.list_tasks(states=["done"])
    assert scheduler.script.calls == []


async def test_delete_one_and_many(scheduler: FakeScheduler) -> None:
    first = scheduler.script.add_task(type="foo")
    scheduler.script.add_task(type="bar", state=task_pb2.TASK_STATE_FAILED)
    scheduler.script.add_task(type="bar", state=task_pb2.TASK_STATE_FAILED)
    async with client_for(scheduler) as client:
        await client.delete_task(first.id)
        assert await client.delete_tasks(states=["failed"]) == 2
        with pytest.raises(ValueError, match="confirm_all"):
            await client.delete_tasks()
        assert await client.delete_tasks(confirm_all=True) == 0
    assert scheduler.script.tasks == {}
    assert scheduler.script.calls_of("DeleteTasks")[-1].request.confirm_all


async def test_cancel_and_retry(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    async with client_for(scheduler) as client:
        with pytest.raises(oc.FailedPrecondition):
            await client.retry_task(task.id)
        assert (await client.cancel_task(task.id)).state == task_pb2.TASK_STATE_CANCELLED
        assert (await client.retry_task(task.id)).state == task_pb2.TASK_STATE_PENDING


async def test_watch_task_iterates_the_stream(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    scheduler.script.watch_states[task.id] = [
        task_pb2.TASK_STATE_RUNNING,
        task_pb2.TASK_STATE_SUCCEEDED,
    ]
    async with client_for(scheduler) as client:
        states = [oc.state_name(event.task.state) async for event in client.watch_task(task.id)]
    assert states == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert scheduler.script.calls_of("WatchTask")[0].time_remaining is None


async def test_watch_of_a_missing_task_raises_not_found(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        with pytest.raises(oc.NotFound):
            async for _ in client.watch_task("missing"):
                pass


async def test_wait_for_task_returns_the_terminal_task(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    scheduler.script.watch_states[task.id] = [
        task_pb2.TASK_STATE_RUNNING,
        task_pb2.TASK_STATE_FAILED,
    ]
    async with client_for(scheduler) as client:
        done = await client.wait_for_task(task.id)
    assert done.state == task_pb2.TASK_STATE_FAILED
    assert done.error == "boom"


async def test_wait_for_task_reopens_a_watch_broken_by_unavailable(
    scheduler: FakeScheduler,
) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    scheduler.script.watch_states[task.id] = [task_pb2.TASK_STATE_SUCCEEDED]
    scheduler.script.failures["WatchTask"] = [grpc.StatusCode.UNAVAILABLE]
    async with client_for(scheduler) as client:
        done = await client.wait_for_task(task.id)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED
    assert len(scheduler.script.calls_of("WatchTask")) == 2


async def test_wait_for_task_times_out(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    scheduler.script.hold_watch.add(task.id)
    async with client_for(scheduler) as client:
        with pytest.raises(TimeoutError):
            await client.wait_for_task(task.id, timeout=0.2)


async def test_wait_for_task_when_the_watch_ends_early(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    async with client_for(scheduler) as client:
        with pytest.raises(oc.WatchEnded, match="PENDING"):
            await client.wait_for_task(task.id)


async def test_watch_tasks_from_a_revision_and_leave_early(scheduler: FakeScheduler) -> None:
    scheduler.script.add_task(type="foo")
    second = scheduler.script.add_task(type="foo")
    third = scheduler.script.add_task(type="bar")
    async with client_for(scheduler) as client:
        seen = []
        async for event in client.watch_tasks(since_revision=1):
            seen.append(event.task.id)
            if len(seen) == 2:
                break
    assert seen == [second.id, third.id]
    assert scheduler.script.calls_of("WatchTasks")[0].request.since_revision == 1


async def test_admin_calls(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        first = await client.list_task_types()
        paused = await client.pause_task_type("foo")
        resumed = await client.resume_task_type("foo")
        workers = await client.list_workers()
        stats = await client.get_stats()
        with pytest.raises(oc.NotFound):
            await client.pause_task_type("nope")
    assert first.next_page_token == "1"
    assert paused.state == admin_service_pb2.TASK_TYPE_STATE_PAUSED
    assert resumed.state == admin_service_pb2.TASK_TYPE_STATE_ACTIVE
    assert workers.workers[0].id == "w1"
    assert stats.totals.succeeded == 5


async def test_channel_is_lazy_and_reopens_after_close(scheduler: FakeScheduler) -> None:
    client = client_for(scheduler)
    await client.get_stats()  # no `async with`: the first call opens the channel
    await client.aclose()
    await client.aclose()  # twice is fine
    await client.get_stats()  # and a closed client opens a new one
    await client.aclose()
    assert len(scheduler.script.calls_of("GetStats")) == 2


async def test_create_task_sends_group_and_concurrency_fields(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        task = await client.create_task(
            "fetch",
            group="invoice-42",
            on_failure="skip",
            concurrency_key="acme",
            key_max_running=2,
            key_max_per_second=0.5,
        )
        plain = await client.create_task("fetch", group="invoice-42")
    first, second = (call.request for call in scheduler.script.calls_of("CreateTask"))
    assert first.on_failure == oc.OnFailure.Value("ON_FAILURE_SKIP")
    assert first.concurrency_key == "acme"
    assert first.concurrency_limits == task_pb2.ConcurrencyLimits(max_running=2, max_per_second=0.5)
    assert (task.on_failure, task.concurrency_key) == (task_pb2.ON_FAILURE_SKIP, "acme")
    assert second.on_failure == task_pb2.ON_FAILURE_UNSPECIFIED
    assert not second.HasField("concurrency_limits")
    assert plain.on_failure == task_pb2.ON_FAILURE_BLOCK


async def test_key_limits_without_a_key_fail_before_any_call(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        with pytest.raises(ValueError, match="concurrency_key"):
            await client.create_task("fetch", key_max_running=2)
        with pytest.raises(ValueError, match=r"tasks\[0\]"):
            await client.batch_create_tasks([{"type": "fetch", "key_max_per_second": 1.0}])
        with pytest.raises(ValueError, match="on_failure"):
            await client.create_task("fetch", on_failure="retry")
    assert scheduler.script.calls == []


async def test_batch_create_carries_the_new_fields(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        await client.batch_create_tasks(
            [
                {"type": "a", "group": "g", "on_failure": task_pb2.ON_FAILURE_SKIP},
                {"type": "b", "concurrency_key": "k", "key_max_running": 1},
            ]
        )
    first, second = scheduler.script.calls_of("BatchCreateTasks")[0].request.tasks
    assert first.on_failure == task_pb2.ON_FAILURE_SKIP
    assert (second.concurrency_key, second.concurrency_limits.max_running) == ("k", 1)


async def test_explain_task(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING)
    explanation = task_service_pb2.ExplainTaskResponse(
        task_id=task.id, state=task.state, summary="It waits for its group.", tasks_ahead=2
    )
    explanation.reasons.add(
        code=oc.ReasonCode.Value("REASON_CODE_GROUP_BLOCKED"), message="m", blocking_task_id="t0"
    )
    scheduler.script.explanations[task.id] = explanation
    async with client_for(scheduler) as client:
        answer = await client.explain_task(task.id)
        with pytest.raises(oc.NotFound):
            await client.explain_task("missing")
    assert answer == explanation
    assert answer.reasons[0].code == task_service_pb2.REASON_CODE_GROUP_BLOCKED
    assert scheduler.script.calls_of("ExplainTask")[0].request.id == task.id


async def test_set_task_type_limits_sends_both_limits(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        limited = await client.set_task_type_limits("foo", max_running=4, max_per_second=2.5)
        rate_only = await client.set_task_type_limits("foo", max_per_second=1.0)
        cleared = await client.set_task_type_limits("foo")
        with pytest.raises(oc.NotFound):
            await client.set_task_type_limits("nope", max_running=1)
    requests = [call.request for call in scheduler.script.calls_of("SetTaskTypeLimits")]
    assert requests[0].type == "foo"
    assert requests[0].limits == task_pb2.ConcurrencyLimits(max_running=4, max_per_second=2.5)
    # Both limits travel every time: the one not given is removed (0).
    assert requests[1].HasField("limits")
    assert requests[1].limits == task_pb2.ConcurrencyLimits(max_per_second=1.0)
    assert requests[2].HasField("limits") and requests[2].limits == task_pb2.ConcurrencyLimits()
    assert (limited.limits.max_running, limited.limits.max_per_second) == (4, 2.5)
    assert rate_only.limits.max_running == 0
    assert cleared.limits == task_pb2.ConcurrencyLimits()


async def test_stats_carry_lateness(scheduler: FakeScheduler) -> None:
    scheduler.script.lateness = ((12_000, 340_000, 1_200_000), 1000)
    async with client_for(scheduler) as client:
        stats = await client.get_stats()
    assert stats.lateness_p50.ToMicroseconds() == 12_000
    assert stats.lateness_max.ToMicroseconds() == 1_200_000
    assert stats.lateness_samples == 1000


async def test_run_task_and_cache_max_age(scheduler: FakeScheduler) -> None:
    task = scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_SCHEDULED)
    async with client_for(scheduler) as client:
        assert (await client.run_task(task.id)).state == task_pb2.TASK_STATE_PENDING
        task.state = task_pb2.TASK_STATE_RUNNING
        with pytest.raises(oc.FailedPrecondition):
            await client.run_task(task.id)
        await client.create_task("foo", cache=True, cache_max_age=600)
        await client.batch_create_tasks([{"type": "foo", "cache": True, "cache_max_age": 5}])
        with pytest.raises(ValueError, match="needs cache"):
            await client.create_task("foo", cache_max_age=600)
    assert scheduler.script.calls_of("CreateTask")[0].request.cache_max_age.seconds == 600
    (item,) = scheduler.script.calls_of("BatchCreateTasks")[0].request.tasks
    assert item.cache_max_age.seconds == 5
    assert len(scheduler.script.calls_of("CreateTask")) == 1  # the refused one sent nothing


async def test_schedules(scheduler: FakeScheduler) -> None:
    async with client_for(scheduler) as client:
        created = await client.create_schedule(
            "0 3 * * *",
            "report",
            {"n": 1},
            time_zone="Europe/Berlin",
            schedule_id="nightly",
            catch_up="all",
            priority=5,
            max_attempts=2,
            backoff=oc.Backoff(initial=1.0),
            timeout=30.0,
            labels={"team": "x"},
            on_failure="skip",
            group="g",
            concurrency_key="k",
            key_max_running=1,
        )
        assert created.id == "nightly"
        assert created.state == oc.ScheduleState.Value("SCHEDULE_STATE_ACTIVE")
        second = await client.create_schedule("*/5 * * * *", "foo", cache=True, cache_max_age=60)
        with pytest.raises(oc.AlreadyExists):
            await client.create_schedule("0 3 * * *", "report", schedule_id="nightly")
        with pytest.raises(ValueError, match="catch_up"):
            await client.create_schedule("0 3 * * *", "report", catch_up="sometimes")
        assert (await client.get_schedule("nightly")).time_zone == "Europe/Berlin"
        page = await client.list_schedules(page_size=1)
        assert [s.id for s in page.schedules] == ["nightly"] and page.next_page_token
        assert [s.id async for s in client.iter_schedules(page_size=1)] == ["nightly", second.id]
        paused = await client.pause_schedule("nightly")
        assert paused.state == admin_service_pb2.SCHEDULE_STATE_PAUSED
        resumed = await client.resume_schedule("nightly")
        assert resumed.state == admin_service_pb2.SCHEDULE_STATE_ACTIVE
        await client.delete_schedule("nightly")
        with pytest.raises(oc.NotFound):
            await client.get_schedule("nightly")
    template = scheduler.script.calls_of("CreateSchedule")[0].request.schedule.template
    # The template is create_task's request, field for field.
    assert template == create_task_request(
        "report",
        {"n": 1},
        priority=5,
        max_attempts=2,
        backoff=oc.Backoff(initial=1.0),
        timeout=30.0,
        labels={"team": "x"},
        on_failure="skip",
        group="g",
        concurrency_key="k",
        key_max_running=1,
    )
    request = scheduler.script.calls_of("CreateSchedule")[0].request
    assert request.schedule.catch_up == admin_service_pb2.CATCH_UP_ALL
    cached = scheduler.script.calls_of("CreateSchedule")[1].request.schedule
    assert cached.template.cache_max_age.seconds == 60
    assert cached.catch_up == admin_service_pb2.CATCH_UP_LATEST
    assert len(scheduler.script.calls_of("CreateSchedule")) == 3  # the bad catch_up sent nothing
