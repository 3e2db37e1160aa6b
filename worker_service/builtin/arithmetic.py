"""``sum2``, ``mult3`` and ``surprise``, the task types of the tasker reference.

They are ``async`` only because they never block: running them on the event loop costs
less than a trip to a thread.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from ..context import TaskContext
from ..registry import handler
from ._payload import number

#: What ``surprise`` picks from.
SURPRISES = ("a rubber duck", "a haiku", "a fortune cookie", "confetti", "nothing at all")


@handler("sum2")
async def sum2(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """``{"first": a, "second": b}`` -> ``{"sum": a + b}``."""
    first, second = number(payload, "first"), number(payload, "second")
    total = first + second
    print(f"sum2: {first} + {second} = {total}", flush=True)
    return {"sum": total}


@handler("mult3")
async def mult3(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """``{"first": a, "second": b, "third": c}`` -> ``{"product": a * b * c}``."""
    factors = [number(payload, field) for field in ("first", "second", "third")]
    product = math.prod(factors)
    print(f"mult3: {' * '.join(map(str, factors))} = {product}", flush=True)
    return {"product": product}


@handler("surprise")
async def surprise(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Ignore the payload and return ``{"surprise": one of SURPRISES, "number": 0..99}``.

    Random on purpose: a task type whose result differs on every run, to show what the
    result cache does (a cached ``surprise`` keeps its first answer).
    """
    result = {"surprise": secrets.choice(SURPRISES), "number": secrets.randbelow(100)}
    print(f"Surprise! {result['surprise']} ({result['number']})", flush=True)
    return result
