"""``foo`` and ``baz``, the task types of the task-runner reference."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from ..context import TaskContext
from ..registry import handler
from ._payload import optional_number


@handler("foo")
async def foo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleep ``--foo-seconds`` (3 s like the reference; payload ``seconds`` overrides), then
    print ``Foo {task_id}``."""
    seconds = optional_number(payload, "seconds", ctx.settings.foo_seconds, minimum=0)
    await asyncio.sleep(seconds)
    message = f"Foo {ctx.task_id}"
    print(message, flush=True)
    return {"message": message}


@handler("baz")
async def baz(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Draw N in 0..343 inclusive and print ``Baz {N}``."""
    number = secrets.randbelow(344)
    print(f"Baz {number}", flush=True)
    return {"number": number}
