"""``--with-worker``: a worker process started and supervised by the scheduler.

For development (``temporal server start-dev`` in spirit): one command gives a scheduler
and a worker with every built-in task type. The worker is a real ``orchestrator-worker``
process talking gRPC to this scheduler; if it dies it is restarted, and on shutdown it is
sent SIGTERM first so it can hand back what it holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

log = logging.getLogger(__name__)

_SCHEDULER_ONLY = frozenset(
    {
        "ORCHESTRATOR_AUTH_TOKENS",
        "ORCHESTRATOR_TLS_CERT",
        "ORCHESTRATOR_TLS_KEY",
        "ORCHESTRATOR_TLS_CLIENT_CA",
        # The worker's spans carry its own service name (the endpoint, though, is shared).
        "ORCHESTRATOR_SERVICE_NAME",
    }
)


class DevWorker:
    def __init__(
        self, scheduler_address: str, extra_args: Sequence[str], *, token: str = ""
    ) -> None:
        self._args = [sys.executable, "-m", "worker_service", "--scheduler", scheduler_address]
        self._args += list(extra_args)
        # The token travels in the environment: a command line is visible to every user.
        # The scheduler's own secrets and server certificate stay out of the worker's
        # environment (the worker would read ORCHESTRATOR_TLS_CERT as its client certificate).
        env = {k: v for k, v in os.environ.items() if k not in _SCHEDULER_ONLY}
        self._env = {**env, "ORCHESTRATOR_TOKEN": token} if token else env
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False

    async def run(self) -> None:
        delay = 0.5
        while not self._stopping:
            self._process = await asyncio.create_subprocess_exec(*self._args, env=self._env)
            log.info("started development worker", extra={"pid": self._process.pid})
            code = await self._process.wait()
            if self._stopping:
                return
            log.warning("development worker exited; restarting", extra={"exit_code": code})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def stop(self, grace: float) -> None:
        self._stopping = True
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()
