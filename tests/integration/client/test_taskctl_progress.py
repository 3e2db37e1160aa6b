"""The spinner of ``create --wait`` and ``watch``: on a terminal's stderr only, never in JSON.

``taskctl`` runs as a real process against the scripted scheduler, with its stderr on a
pseudo-terminal (what a person sees) or a pipe (what a script sees).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import struct
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.v1 import task_pb2
from orchestrator_client.cli import ExitCode
from tests.support.clis import taskctl_command
from tests.support.polling import eventually

if TYPE_CHECKING:
    from conftest import FakeScheduler

ESC = "\x1b"
DONE = [task_pb2.TASK_STATE_RUNNING, task_pb2.TASK_STATE_SUCCEEDED]


@dataclass
class Run:
    """A taskctl process; ``stderr`` is what it has written so far."""

    process: asyncio.subprocess.Process
    terminal: int | None  # the pty's controller side, when stderr is a terminal
    stderr: str = ""
    stdout: str = ""

    def read_terminal(self) -> str:
        if self.terminal is None:
            return self.stderr
        while True:
            try:
                chunk = os.read(self.terminal, 65536)
            except (BlockingIOError, OSError):  # nothing yet; EIO once the process is gone
                return self.stderr
            if not chunk:
                return self.stderr
            self.stderr += chunk.decode(errors="replace")

    async def finish(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109 - a deadline
        deadline = time.monotonic() + timeout
        stdout = self.process.stdout
        assert stdout is not None
        self.stdout = (await asyncio.wait_for(stdout.read(), timeout)).decode()
        code = await asyncio.wait_for(self.process.wait(), max(0.1, deadline - time.monotonic()))
        self.read_terminal()
        if self.terminal is not None:
            os.close(self.terminal)
        elif self.process.stderr is not None:
            self.stderr = (await self.process.stderr.read()).decode()
        return code


async def _taskctl(scheduler: FakeScheduler, *argv: str, stderr_terminal: bool) -> Run:
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONUNBUFFERED": "1"}
    env.pop("NO_COLOR", None)
    command = [*taskctl_command(), "--scheduler", scheduler.target, *argv]
    if not stderr_terminal:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        return Run(process, None)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    os.set_blocking(controller, False)
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    return Run(process, controller)


async def test_create_wait_shows_a_spinner_on_a_terminal(scheduler: FakeScheduler) -> None:
    scheduler.script.hold_watch.add("t1")  # the task never ends: the spinner stays
    run = await _taskctl(scheduler, "--no-json", "create", "foo", "--wait", stderr_terminal=True)
    try:
        await eventually(
            lambda: "waiting for task t1 to end" in run.read_terminal(),
            timeout=30,
            message="the spinner on the terminal",
        )
    finally:
        run.process.send_signal(signal.SIGINT)
        code = await run.finish()
    assert code == ExitCode.INTERRUPTED
    assert ESC in run.stderr  # drawn (and erased) with terminal control codes
    assert ESC not in run.stdout


async def test_watch_updates_its_spinner_and_prints_events_on_stdout(
    scheduler: FakeScheduler,
) -> None:
    scheduler.script.add_task(type="foo", state=task_pb2.TASK_STATE_PENDING, max_attempts=3)
    scheduler.script.watch_states["t1"] = [task_pb2.TASK_STATE_RUNNING]
    scheduler.script.hold_watch.add("t1")
    run = await _taskctl(scheduler, "--no-json", "watch", "t1", stderr_terminal=True)
    try:
        await eventually(
            lambda: "watching task t1: RUNNING, attempt 1 of 3" in run.read_terminal(),
            timeout=30,
            message="the spinner saying where the task is",
        )
    finally:
        run.process.send_signal(signal.SIGINT)
        await run.finish()
    assert "RUNNING" in run.stdout and "watching" not in run.stdout


async def test_piped_output_has_no_spinner_and_no_escape_codes(scheduler: FakeScheduler) -> None:
    scheduler.script.watch_states["t1"] = DONE
    run = await _taskctl(scheduler, "--no-json", "create", "foo", "--wait", stderr_terminal=False)
    assert await run.finish() == ExitCode.OK
    assert "SUCCEEDED" in run.stdout
    assert ESC not in run.stdout and ESC not in run.stderr
    assert "waiting for task" not in run.stderr
    assert "created t1; waiting for it to end" in run.stderr


async def test_json_mode_draws_no_spinner_even_on_a_terminal(scheduler: FakeScheduler) -> None:
    scheduler.script.watch_states["t1"] = DONE
    run = await _taskctl(scheduler, "--json", "create", "foo", "--wait", stderr_terminal=True)
    assert await run.finish() == ExitCode.OK
    assert '"state": "TASK_STATE_SUCCEEDED"' in run.stdout
    assert "waiting for task" not in run.stderr
    assert ESC not in run.stderr and ESC not in run.stdout


async def test_batch_draws_its_bar_on_a_terminal_but_not_beside_json(
    scheduler: FakeScheduler, tmp_path: Path
) -> None:
    scheduler.script.worker = lambda task: (task_pb2.TASK_STATE_SUCCEEDED, {"ok": True}, "")
    rows = tmp_path / "rows.csv"
    rows.write_text("task_id,task_type\nr1,foo\n")
    people = await _taskctl(
        scheduler, "--no-json", "batch", str(rows), "-o", str(tmp_path / "a.csv"),
        stderr_terminal=True,
    )  # fmt: skip
    assert await people.finish() == ExitCode.OK, people.stderr
    assert "submitting" in people.stderr or "waiting" in people.stderr
    programs = await _taskctl(
        scheduler, "--json", "batch", str(rows), "-o", str(tmp_path / "b.csv"),
        stderr_terminal=True,
    )  # fmt: skip
    assert await programs.finish() == ExitCode.OK, programs.stderr
    # The summary still goes to the terminal (dimmed), the bar does not.
    assert "submitting" not in programs.stderr and "waiting" not in programs.stderr
    assert "1 row: 1 SUCCEEDED" in programs.stderr
