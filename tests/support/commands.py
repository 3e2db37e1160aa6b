"""Command-line clients (grpcurl, taskctl) run as real subprocesses, and their JSON output.

Commands run through ``asyncio.create_subprocess_exec`` so that the test's event loop keeps
running meanwhile; :class:`BackgroundCommand` leaves one running (a watch) while the test goes
on and reads what it has printed so far.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def json_objects(text: str) -> tuple[list[Any], str]:
    """The complete top-level JSON values at the start of ``text``, one after another (as
    grpcurl prints stream messages, pretty-printed, and taskctl prints events, one per line),
    and what is left over: a value still being written, or something that is not JSON."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return values, ""
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return values, text[position:]
        values.append(value)


def parse_time(text: str) -> dt.datetime:
    """A time of the protobuf JSON mapping (RFC 3339 in UTC with 0, 3, 6 or 9 fractional
    digits, so the strings themselves do not compare in time order)."""
    head, _, fraction = text.removesuffix("Z").partition(".")
    micros = (fraction + "000000")[:6]
    return dt.datetime.fromisoformat(f"{head}.{micros}+00:00")


@dataclass
class CommandResult:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def json_values(self) -> list[Any]:
        """Everything on stdout, which must be nothing but JSON values."""
        values, rest = json_objects(self.stdout)
        assert not rest.strip(), f"not JSON on stdout: {rest[:500]!r}\n{self}"
        return values

    def json(self) -> Any:
        """The one JSON value of a successful command."""
        assert self.returncode == 0, f"exit status {self.returncode}\n{self}"
        values = self.json_values()
        assert len(values) == 1, f"expected one JSON value, got {len(values)}\n{self}"
        return values[0]

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n-> {self.returncode}\n"
            f"---- stdout\n{self.stdout[-4000:]}\n---- stderr\n{self.stderr[-4000:]}"
        )


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without ``ORCHESTRATOR_*`` (the clients read those)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    return {**env, **extra}


async def run_command(
    args: Sequence[str], *, within: float = 30.0, env: Mapping[str, str] | None = None
) -> CommandResult:
    """Run ``args`` to the end (it fails the test if it takes longer than ``within`` s)."""
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env) if env is not None else clean_environment(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{' '.join(args)} still running after {within}s") from None
    assert process.returncode is not None
    return CommandResult(args, process.returncode, stdout.decode(), stderr.decode())


class BackgroundCommand:
    """A command left running (a watch); its output so far can be read at any moment.

    Use it as ``async with await BackgroundCommand.start(args) as command:``; leaving the
    block kills the command if it is still running (a test that failed half-way).
    """

    def __init__(self, args: Sequence[str], process: asyncio.subprocess.Process) -> None:
        self.args = args
        self.process = process
        self._stdout = bytearray()
        self._stderr = bytearray()
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._drain(process.stdout, self._stdout)),
            asyncio.create_task(self._drain(process.stderr, self._stderr)),
        ]

    @classmethod
    async def start(
        cls, args: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> BackgroundCommand:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else clean_environment(),
        )
        return cls(args, process)

    async def __aenter__(self) -> BackgroundCommand:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await asyncio.gather(*self._readers)

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into.extend(chunk)

    def json_so_far(self) -> list[Any]:
        """The JSON values printed completely so far."""
        return json_objects(self._stdout.decode(errors="replace"))[0]

    async def finish(self, within: float) -> CommandResult:
        """Wait for the command to end by itself (killed after ``within`` s, which fails)."""
        try:
            await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise AssertionError(f"{' '.join(self.args)} still running after {within}s") from None
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            await asyncio.gather(*self._readers)
        assert self.process.returncode is not None
        return CommandResult(
            self.args, self.process.returncode, self._stdout.decode(), self._stderr.decode()
        )
