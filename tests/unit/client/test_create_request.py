"""Request messages from keyword arguments, checked before any I/O."""

from __future__ import annotations

import datetime as dt

import pytest

import orchestrator_client as oc
from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from orchestrator_client._requests import (
    TaskFilter,
    concurrency_limits,
    create_schedule_request,
    create_task_request,
    create_task_requests,
    parse_catch_up,
    parse_on_failure,
)

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_minimal_request_leaves_defaults_to_the_scheduler() -> None:
    request = create_task_request("foo")
    assert request.type == "foo"
    assert not request.HasField("run_at")
    assert not request.HasField("timeout")
    assert not request.HasField("backoff")
    assert request.max_attempts == 0
    assert request.priority == 0
    assert request.on_failure == task_pb2.ON_FAILURE_UNSPECIFIED  # BLOCK, the default
    assert request.concurrency_key == ""
    assert not request.HasField("concurrency_limits")


def test_every_field_is_carried() -> None:
    run_at = NOW + dt.timedelta(hours=1)
    request = create_task_request(
        "sum2",
        {"first": 1, "second": 2},
        run_at=run_at,
        priority=7,
        max_attempts=5,
        backoff=oc.Backoff(initial=0.5, multiplier=3.0, maximum=60.0, jitter=0.1),
        timeout=30.0,
        group="g",
        idempotency_key="k",
        cache=True,
        labels={"team": "billing"},
    )
    assert request.payload["first"] == 1
    assert request.run_at.ToDatetime(tzinfo=dt.UTC) == run_at
    assert request.priority == 7
    assert request.max_attempts == 5
    assert request.backoff.initial.ToMilliseconds() == 500
    assert request.backoff.multiplier == 3.0
    assert request.backoff.maximum.seconds == 60
    assert request.backoff.jitter == pytest.approx(0.1)
    assert request.timeout.seconds == 30
    assert (request.group, request.idempotency_key, request.cache) == ("g", "k", True)
    assert dict(request.labels) == {"team": "billing"}


def test_partial_backoff_sets_only_what_was_given() -> None:
    request = create_task_request("foo", backoff=oc.Backoff(multiplier=2.5))
    assert request.backoff.multiplier == 2.5
    assert not request.backoff.HasField("initial")
    assert not request.backoff.HasField("jitter")


def test_zero_jitter_is_sent_as_set() -> None:
    # `jitter` is `optional` in the contract so that 0 differs from "the default".
    request = create_task_request("foo", backoff=oc.Backoff(jitter=0.0))
    assert request.backoff.HasField("jitter")
    assert request.backoff.jitter == 0.0


def test_proto_backoff_is_taken_as_is() -> None:
    policy = task_pb2.BackoffPolicy(multiplier=4.0)
    assert create_task_request("foo", backoff=policy).backoff == policy


def test_delay_is_seconds_from_now() -> None:
    request = create_task_request("foo", delay=90, now=lambda: NOW)
    assert request.run_at.ToDatetime(tzinfo=dt.UTC) == NOW + dt.timedelta(seconds=90)


def test_delay_and_run_at_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="not both"):
        create_task_request("foo", run_at=NOW, delay=1)


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay"):
        create_task_request("foo", delay=-1)


def test_naive_run_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        create_task_request("foo", run_at=dt.datetime(2026, 1, 1))


def test_batch_takes_messages_and_dicts() -> None:
    message = task_service_pb2.CreateTaskRequest(type="foo")
    requests = create_task_requests([message, {"type": "bar", "payload": {"url": "u"}}])
    assert requests[0] is message
    assert requests[1].type == "bar"
    assert requests[1].payload["url"] == "u"


def test_batch_names_the_bad_item() -> None:
    with pytest.raises(ValueError, match=r"tasks\[1\]"):
        create_task_requests([{"type": "foo"}, {"type": "foo", "colour": "red"}])


def test_filter_parses_states_and_single_strings() -> None:
    task_filter = TaskFilter.build(states="failed", types="foo", labels={"a": "b"})
    assert task_filter.states == [task_pb2.TASK_STATE_FAILED]
    assert task_filter.types == ["foo"]
    assert not task_filter.is_empty()
    assert TaskFilter.build().is_empty()
    request = task_service_pb2.ListTasksRequest(**task_filter.fields())
    assert list(request.states) == [task_pb2.TASK_STATE_FAILED]
    assert dict(request.labels) == {"a": "b"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("skip", task_pb2.ON_FAILURE_SKIP),
        ("SKIP", task_pb2.ON_FAILURE_SKIP),
        (" block ", task_pb2.ON_FAILURE_BLOCK),
        ("on_failure_block", task_pb2.ON_FAILURE_BLOCK),
        (task_pb2.ON_FAILURE_SKIP, task_pb2.ON_FAILURE_SKIP),
        (oc.OnFailure.Value("ON_FAILURE_BLOCK"), task_pb2.ON_FAILURE_BLOCK),
        (task_pb2.ON_FAILURE_UNSPECIFIED, task_pb2.ON_FAILURE_UNSPECIFIED),
    ],
)
def test_on_failure_by_name_or_value(
    value: str | task_pb2.OnFailure.ValueType, expected: task_pb2.OnFailure.ValueType
) -> None:
    assert parse_on_failure(value) == expected
    assert create_task_request("foo", group="g", on_failure=value).on_failure == expected


@pytest.mark.parametrize("value", ["retry", "", "unspecified", "ON_FAILURE_UNSPECIFIED", 7])
def test_unknown_on_failure_is_refused_with_the_choices(value: str | int) -> None:
    with pytest.raises(ValueError, match="expected 'block' or 'skip'"):
        parse_on_failure(value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_failure"):
        create_task_request("foo", on_failure=value)  # type: ignore[arg-type]


def test_concurrency_key_with_both_limits() -> None:
    request = create_task_request(
        "fetch", concurrency_key="acme", key_max_running=3, key_max_per_second=0.5
    )
    assert request.concurrency_key == "acme"
    assert request.HasField("concurrency_limits")
    assert request.concurrency_limits.max_running == 3
    assert request.concurrency_limits.max_per_second == 0.5


def test_one_key_limit_sends_both_the_other_as_no_limit() -> None:
    # The key's limits are replaced as a whole: the message carries both, 0 for "none".
    request = create_task_request("fetch", concurrency_key="acme", key_max_per_second=2.0)
    assert request.concurrency_limits == task_pb2.ConcurrencyLimits(max_per_second=2.0)
    zero = create_task_request("fetch", concurrency_key="acme", key_max_running=0)
    assert zero.HasField("concurrency_limits")  # given as 0: removes the key's limits
    assert zero.concurrency_limits == task_pb2.ConcurrencyLimits()


def test_a_key_without_limits_leaves_the_keys_limits_alone() -> None:
    request = create_task_request("fetch", concurrency_key="acme")
    assert request.concurrency_key == "acme"
    assert not request.HasField("concurrency_limits")


@pytest.mark.parametrize(
    "limits", [{"key_max_running": 2}, {"key_max_per_second": 1.0}, {"key_max_running": 0}]
)
def test_key_limits_without_a_key_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need a concurrency_key"):
        create_task_request("fetch", **limits)  # type: ignore[arg-type]


def test_batch_items_carry_the_new_fields_and_name_the_bad_item() -> None:
    requests = create_task_requests(
        [
            {"type": "a", "group": "g", "on_failure": "skip"},
            {"type": "b", "concurrency_key": "k", "key_max_running": 1},
        ]
    )
    assert requests[0].on_failure == task_pb2.ON_FAILURE_SKIP
    assert requests[1].concurrency_limits.max_running == 1
    with pytest.raises(ValueError, match=r"tasks\[1\]: key_max_running"):
        create_task_requests([{"type": "a"}, {"type": "b", "key_max_running": 1}])


def test_concurrency_limits_message() -> None:
    assert concurrency_limits() == task_pb2.ConcurrencyLimits()
    assert concurrency_limits(4, 0.25) == task_pb2.ConcurrencyLimits(
        max_running=4, max_per_second=0.25
    )


def test_cache_max_age_is_a_duration_and_needs_cache() -> None:
    request = create_task_request("foo", cache=True, cache_max_age=90.5)
    assert request.cache_max_age.ToMilliseconds() == 90_500
    assert not create_task_request("foo", cache=True).HasField("cache_max_age")
    with pytest.raises(ValueError, match="cache_max_age needs cache=True"):
        create_task_request("foo", cache_max_age=10)
    with pytest.raises(ValueError, match="must be >= 0"):
        create_task_request("foo", cache=True, cache_max_age=-1)
    (item,) = create_task_requests([{"type": "foo", "cache": True, "cache_max_age": 60}])
    assert item.cache_max_age.seconds == 60


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("latest", admin_service_pb2.CATCH_UP_LATEST),
        (" SKIP ", admin_service_pb2.CATCH_UP_SKIP),
        ("catch_up_all", admin_service_pb2.CATCH_UP_ALL),
        (oc.CatchUp.Value("CATCH_UP_ALL"), admin_service_pb2.CATCH_UP_ALL),
        (admin_service_pb2.CATCH_UP_UNSPECIFIED, admin_service_pb2.CATCH_UP_UNSPECIFIED),
    ],
)
def test_catch_up_by_name_or_value(
    value: str | admin_service_pb2.CatchUp.ValueType, expected: admin_service_pb2.CatchUp.ValueType
) -> None:
    assert parse_catch_up(value) == expected


@pytest.mark.parametrize("value", ["never", "", "unspecified", 9])
def test_unknown_catch_up_is_refused_with_the_choices(value: str | int) -> None:
    with pytest.raises(ValueError, match="expected 'latest', 'skip' or 'all'"):
        parse_catch_up(value)  # type: ignore[arg-type]


def test_schedule_request_wraps_the_create_task_template() -> None:
    template = create_task_request("report", {"n": 1}, priority=3, timeout=30.0)
    request = create_schedule_request(
        "0 3 * * *", template, time_zone="Europe/Berlin", schedule_id="nightly", catch_up="skip"
    )
    assert request.schedule_id == "nightly"
    schedule = request.schedule
    assert (schedule.cron, schedule.time_zone) == ("0 3 * * *", "Europe/Berlin")
    assert schedule.catch_up == admin_service_pb2.CATCH_UP_SKIP
    assert schedule.template == template
    default = create_schedule_request("* * * * *", create_task_request("foo")).schedule
    assert (default.time_zone, default.catch_up) == ("UTC", admin_service_pb2.CATCH_UP_LATEST)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (create_task_request("foo", run_at=NOW), "no run_at"),
        (create_task_request("foo", idempotency_key="k"), "no idempotency_key"),
    ],
)
def test_a_schedule_template_without_start_or_key(
    template: task_service_pb2.CreateTaskRequest, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        create_schedule_request("* * * * *", template)
