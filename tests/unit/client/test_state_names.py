"""States by the names people type."""

from __future__ import annotations

import pytest

import orchestrator_client as oc
from orchestrator.v1 import task_pb2
from orchestrator_client._states import parse_states, state_names


@pytest.mark.parametrize(
    "text", ["failed", "FAILED", "Failed", "TASK_STATE_FAILED", "task_state_failed", " failed "]
)
def test_names_in_any_spelling(text: str) -> None:
    assert oc.parse_state(text) == task_pb2.TASK_STATE_FAILED


def test_enum_values_pass_through() -> None:
    assert oc.parse_state(task_pb2.TASK_STATE_RUNNING) == task_pb2.TASK_STATE_RUNNING


@pytest.mark.parametrize("value", ["unspecified", "TASK_STATE_UNSPECIFIED", "done", "", 0, 99])
def test_unknown_or_unspecified_is_refused_with_the_valid_names(value: str | int) -> None:
    with pytest.raises(ValueError, match="scheduled, pending, running, succeeded"):
        oc.parse_state(value)  # type: ignore[arg-type]


def test_state_names_in_lifecycle_order() -> None:
    assert state_names() == ["scheduled", "pending", "running", "succeeded", "failed", "cancelled"]


def test_parse_states_of_none_is_the_empty_filter() -> None:
    assert parse_states(None) == []
    assert parse_states(["pending", task_pb2.TASK_STATE_FAILED]) == [2, 5]


def test_state_name_for_people() -> None:
    assert oc.state_name(task_pb2.TASK_STATE_SUCCEEDED) == "SUCCEEDED"
    assert oc.state_name(42) == "STATE_42"  # type: ignore[arg-type]


def test_terminal_states() -> None:
    assert {oc.state_name(s) for s in oc.TERMINAL_STATES} == {"SUCCEEDED", "FAILED", "CANCELLED"}
