"""Real scheduler and worker processes on loopback, for integration and e2e tests.

Each process writes stdout and stderr to files under the test's ``tmp_path``; the
scheduler's "scheduler ready" log line tells its real ports (it listens on port 0).
On failure, the logs are printed so that the reason is in the test report.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

_READY = re.compile(r"scheduler ready grpc=(\S+) http=(\S+)")
# The same line with --log-format json.
_READY_JSON = re.compile(r'"msg": "scheduler ready", "grpc": "([^"]+)", "http": "([^"]+)"')


class ManagedProcess:
    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str] | None):
        self.name = name
        self.args = args
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        # Appending keeps the output of earlier runs of the same name (restarts).
        self._stdout = open(self.stdout_path, "ab")  # noqa: SIM115 - closed in wait()
        self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115
        self._stderr_start = self._stderr.tell()  # this run's output starts here
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(
            args, stdout=self._stdout, stderr=self._stderr, env=full_env, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def own_stderr(self) -> str:
        """This run's stderr only (a restarted process appends to the same file)."""
        with self.stderr_path.open("rb") as handle:
            handle.seek(self._stderr_start)
            return handle.read().decode(errors="replace")

    def signal(self, sig: int) -> None:
        if self.running:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait(10)
        self._stdout.close()
        self._stderr.close()
        return code

    async def wait_async(self, timeout: float) -> int:  # noqa: ASYNC109 - a polling deadline
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still running after {timeout}s")
            await asyncio.sleep(0.02)
        return self.wait(1)

    def dump(self) -> str:
        return (
            f"---- {self.name} {self.args}\n---- stdout\n{self.stdout()[-4000:]}"
            f"\n---- stderr\n{self.stderr()[-8000:]}"
        )


class SchedulerProcess(ManagedProcess):
    grpc_address = ""
    http_address = ""
    #: Seconds from spawning the process to its "scheduler ready" line.
    ready_after = 0.0

    async def wait_ready(self, timeout: float = 20.0) -> None:  # noqa: ASYNC109 - a polling deadline
        deadline = time.monotonic() + timeout
        while True:
            stderr = self.own_stderr()
            found = _READY.findall(stderr) or _READY_JSON.findall(stderr)
            if found:
                self.grpc_address, self.http_address = found[-1]
                self.ready_after = time.monotonic() - self.started_at
                return
            if not self.running:
                raise AssertionError(f"scheduler exited early\n{self.dump()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"scheduler not ready in {timeout}s\n{self.dump()}")
            await asyncio.sleep(0.02)


def scheduler_args(database: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "scheduler_service",
        "--listen", "127.0.0.1:0",
        "--http-listen", "127.0.0.1:0",
        "--database", str(database),
        *extra,
    ]  # fmt: skip


def worker_args(scheduler: str, worker_id: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "worker_service",
        "--scheduler", scheduler,
        "--worker-id", worker_id,
        *extra,
    ]  # fmt: skip
