"""``holds_for``: the one sanctioned observation window, to show that something does NOT happen.

Waiting for an event uses :func:`tests.support.polling.eventually`; but "a paused type is
not leased" or "a blocked group's tasks stay pending" has no event to wait for, so the test
watches for a bounded while and fails as soon as the thing that must not happen does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def holds_for(seconds: float, probe: Callable[[], Awaitable[str]]) -> None:
    """Fail as soon as ``probe`` reports a problem (a non-empty string) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        problem = await probe()
        assert not problem, problem
        await asyncio.sleep(0.05)
    problem = await probe()
    assert not problem, problem
