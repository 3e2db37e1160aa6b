"""call_timed: what a pool child sends back about when the handler started."""

from __future__ import annotations

import pickle
import time
from typing import Any

import pytest

from worker_service import PermanentError
from worker_service.pool_child import STARTED_AT_ATTRIBUTE, call_timed


def add(a: int, b: int) -> int:
    return a + b


def refuse(*_: Any) -> None:
    raise PermanentError("payload field 'x' is required")


def test_the_start_comes_with_the_value() -> None:
    before = time.time()
    started, value = call_timed(add, 1, 2)
    assert value == 3
    assert before <= started <= time.time()


def test_the_start_comes_with_an_exception_across_pickling() -> None:
    before = time.time()
    with pytest.raises(PermanentError) as raised:
        call_timed(refuse, {}, None)
    crossed = pickle.loads(pickle.dumps(raised.value))  # as the pool sends it back
    assert isinstance(crossed, PermanentError)
    assert str(crossed) == "payload field 'x' is required"
    started = getattr(crossed, STARTED_AT_ATTRIBUTE)
    assert before <= started <= time.time()
