"""``eventually``: wait for a condition with a deadline instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline that fails the test with `message`
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Call ``probe`` until it returns something truthy; return that, or fail at the deadline.

    An exception from the probe counts as "not yet" until the deadline, then is raised.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
            if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
                value = await value
            if value:
                return value
            last_error = None
        except AssertionError as exc:
            last_error = exc
        except Exception as exc:  # retried until the deadline
            last_error = exc
        if time.monotonic() > deadline:
            if last_error is not None:
                raise AssertionError(f"{message} not met within {timeout}s") from last_error
            raise AssertionError(f"{message} not met within {timeout}s")
        await asyncio.sleep(interval)
