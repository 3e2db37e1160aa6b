"""``cpu_process`` (AsyncTaskProcessor): burns CPU in the process pool; fails on request.

Payload: ``iterations`` (sha256 rounds, default 200 000, at most 20 000 000), ``seed``
(string hashed first; default empty, so one payload always gives one digest), ``fail``
(true: fail every attempt — the reference's "fails on purpose, to test retries") and
``fail_attempts`` (N: fail while the attempt number is at most N, so attempt N+1
succeeds). Those failures are retryable, as in the reference.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..context import TaskInfo
from ..errors import TaskFailed
from ..registry import handler
from ._payload import optional_bool, optional_int, optional_str

DEFAULT_ITERATIONS = 200_000
MAX_ITERATIONS = 20_000_000


@handler("cpu_process", cpu_bound=True)
def cpu_process(payload: dict[str, Any], info: TaskInfo) -> dict[str, Any]:
    iterations = optional_int(
        payload, "iterations", DEFAULT_ITERATIONS, minimum=0, maximum=MAX_ITERATIONS
    )
    fail = optional_bool(payload, "fail")
    fail_attempts = optional_int(payload, "fail_attempts", 0, minimum=0, maximum=1_000_000)
    digest = hashlib.sha256(optional_str(payload, "seed", "").encode()).digest()
    for _ in range(iterations):
        digest = hashlib.sha256(digest).digest()
    if fail or info.attempt <= fail_attempts:
        raise TaskFailed(
            f"cpu_process fails on purpose, to test retries "
            f"(attempt {info.attempt} of {info.max_attempts})"
        )
    print(f"CPU task {info.task_id}: {iterations} sha256 rounds -> {digest.hex()[:16]}", flush=True)
    return {"digest": digest.hex(), "iterations": iterations}
