"""Request messages from keyword arguments, checked before any I/O."""

from __future__ import annotations

import datetime as dt

import pytest

import orchestrator_client as oc
from orchestrator.v1 import task_pb2, task_service_pb2
from orchestrator_client._requests import TaskFilter, create_task_request, create_task_requests

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_minimal_request_leaves_defaults_to_the_scheduler() -> None:
    request = create_task_request("foo")
    assert request.type == "foo"
    assert not request.HasField("run_at")
    assert not request.HasField("timeout")
    assert not request.HasField("backoff")
    assert request.max_attempts == 0
    assert request.priority == 0


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
