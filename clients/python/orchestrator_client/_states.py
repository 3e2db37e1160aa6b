"""Task states by name: what people type (``failed``) to what the contract sends (``5``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

from orchestrator.v1 import task_pb2

_PREFIX = "TASK_STATE_"

#: A state as the library accepts it: the enum value, or a name such as ``"failed"``,
#: ``"FAILED"`` or ``"TASK_STATE_FAILED"``.
StateLike: TypeAlias = task_pb2.TaskState.ValueType | str

#: States a task never leaves on its own; watches end and ``wait_for_task`` returns there.
TERMINAL_STATES: frozenset[task_pb2.TaskState.ValueType] = frozenset(
    {
        task_pb2.TASK_STATE_SUCCEEDED,
        task_pb2.TASK_STATE_FAILED,
        task_pb2.TASK_STATE_CANCELLED,
    }
)


def state_names() -> list[str]:
    """The short lower-case names of the real states, in lifecycle order."""
    return [
        name.removeprefix(_PREFIX).lower()
        for name, number in task_pb2.TaskState.items()
        if number != task_pb2.TASK_STATE_UNSPECIFIED
    ]


def parse_state(value: StateLike) -> task_pb2.TaskState.ValueType:
    """The enum value for ``value``; ``ValueError`` naming the valid states otherwise.

    ``UNSPECIFIED`` is refused: as a filter it would match nothing, which is never what
    someone who typed it meant.
    """
    if isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith(_PREFIX):
            name = _PREFIX + name
        try:
            number = task_pb2.TaskState.Value(name)
        except ValueError:
            number = task_pb2.TASK_STATE_UNSPECIFIED
    else:
        number = value if value in task_pb2.TaskState.values() else task_pb2.TASK_STATE_UNSPECIFIED
    if number == task_pb2.TASK_STATE_UNSPECIFIED:
        expected = ", ".join(state_names())
        raise ValueError(f"unknown task state {value!r}; expected one of {expected}")
    return number


def parse_states(values: Iterable[StateLike] | None) -> list[task_pb2.TaskState.ValueType]:
    """:func:`parse_state` over a filter argument; ``None`` is the empty filter."""
    return [parse_state(value) for value in values or ()]


def state_name(value: task_pb2.TaskState.ValueType) -> str:
    """``TASK_STATE_FAILED`` -> ``FAILED``, for people; unknown numbers as ``STATE_<n>``."""
    try:
        name: str = task_pb2.TaskState.Name(value)
        return name.removeprefix(_PREFIX)
    except ValueError:
        return f"STATE_{int(value)}"
