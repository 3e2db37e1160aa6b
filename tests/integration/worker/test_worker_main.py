"""``python -m worker_service`` as a real process against the scripted scheduler: the
startup line, signals, exit codes, ``--module``."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from orchestrator.v1 import worker_service_pb2 as pb
from tests.integration.worker.doubles import End, FakeStream, ScriptedServer, dead_address, lease
from tests.support.processes import ManagedProcess, worker_args
from worker_service.registry import HandlerRegistry

Outcome = pb.ResultOutcome
STARTUP = 30.0  # a cold interpreter importing grpc on a busy machine

Spawn = Callable[..., ManagedProcess]


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawn]:
    processes: list[ManagedProcess] = []

    def start(scheduler: str, *extra: str, env: dict[str, str] | None = None) -> ManagedProcess:
        name = f"worker{len(processes) + 1}"
        process = ManagedProcess(name, worker_args(scheduler, name, *extra), tmp_path, env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()


async def held(stream: FakeStream, lease_id: str) -> None:
    """Wait for a heartbeat that holds ``lease_id``: the task is running."""
    while lease_id not in (await stream.expect("heartbeat")).lease_ids:
        pass


async def test_sigterm_lets_running_tasks_finish_then_exits_zero(
    scheduler: ScriptedServer, spawn: Spawn
) -> None:
    scheduler.servicer.heartbeat_interval = 0.05
    worker = spawn(scheduler.address, "--slots=2", "--shutdown-grace=20")
    stream = await scheduler.servicer.next_stream(within=STARTUP)
    assert list(stream.hello.task_types) == HandlerRegistry.with_builtins().names()
    assert stream.hello.pid == worker.pid
    stream.lease(lease("t1", "foo", payload=b'{"seconds": 0.3}'))
    await held(stream, "lease-t1")

    worker.signal(signal.SIGTERM)
    await stream.expect("draining")
    [result], _ = await stream.results(1)
    assert (result.task_id, result.outcome) == ("t1", Outcome.RESULT_OUTCOME_SUCCEEDED)
    assert json.loads(result.result_json) == {"message": "Foo t1"}
    await stream.until_closed()
    assert await worker.wait_async(STARTUP) == 0
    out = worker.stdout()
    assert out.startswith(f"orchestrator-worker worker1: scheduler {scheduler.address}, 2 slots")
    assert "Foo t1\n" in out


async def test_a_list_of_schedulers_fails_over_to_the_live_one(
    scheduler: ScriptedServer, spawn: Spawn
) -> None:
    dead = dead_address()
    worker = spawn(f"{dead},{scheduler.address}", "--slots=2")
    stream = await scheduler.servicer.next_stream(within=STARTUP)
    stream.lease(lease("t1", "sum2", payload=b'{"first": 2, "second": 3}'))
    [result], _ = await stream.results(1)
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
    worker.signal(signal.SIGTERM)
    assert await worker.wait_async(STARTUP) == 0
    assert worker.stdout().startswith(
        f"orchestrator-worker worker1: schedulers {dead},{scheduler.address} "
        "(failover in this order), 2 slots"
    )
    logs = worker.stderr()
    assert f"connection to the scheduler at {dead} failed" in logs
    assert f"connected to scheduler scripted at {scheduler.address}" in logs


async def test_a_second_signal_exits_at_once(scheduler: ScriptedServer, spawn: Spawn) -> None:
    scheduler.servicer.heartbeat_interval = 0.05
    worker = spawn(scheduler.address, "--shutdown-grace=600")
    stream = await scheduler.servicer.next_stream(within=STARTUP)
    stream.lease(lease("t1", "foo", payload=b'{"seconds": 600}'))
    await held(stream, "lease-t1")

    worker.signal(signal.SIGTERM)
    await stream.expect("draining")
    worker.signal(signal.SIGINT)
    assert await worker.wait_async(STARTUP) == 130


async def test_a_refused_worker_exits_non_zero(scheduler: ScriptedServer, spawn: Spawn) -> None:
    scheduler.servicer.reject = End(
        grpc.StatusCode.FAILED_PRECONDITION, "protocol version 1 is not supported"
    )
    worker = spawn(scheduler.address)
    assert await worker.wait_async(STARTUP) == 1
    assert "refused this worker: FAILED_PRECONDITION: protocol version 1" in worker.stderr()
    assert len(scheduler.servicer.hellos) == 1


async def test_an_unknown_task_type_is_a_usage_error(spawn: Spawn) -> None:
    worker = spawn("127.0.0.1:1", "--task-types=foo,fooo")
    assert await worker.wait_async(STARTUP) == 2
    assert "no handler for task type(s) fooo; known: bar, baz" in worker.stderr()


async def test_user_handlers_from_module(
    scheduler: ScriptedServer, spawn: Spawn, tmp_path: Path
) -> None:
    modules = tmp_path / "user_code"
    modules.mkdir()
    (modules / "greetings.py").write_text(
        textwrap.dedent(
            """
            from worker_service import handler

            @handler("greet")
            async def greet(payload, ctx):
                print(f"Hello, {payload['name']}!", flush=True)
                return {"greeting": f"Hello, {payload['name']}!"}
            """
        )
    )
    worker = spawn(
        scheduler.address,
        "--module=greetings",
        env={"PYTHONPATH": str(modules), "ORCHESTRATOR_TASK_TYPES": "greet,sum2"},
    )
    stream = await scheduler.servicer.next_stream(within=STARTUP)
    assert list(stream.hello.task_types) == ["greet", "sum2"]
    stream.lease(lease("g1", "greet", payload=b'{"name": "Ada"}'))
    [result], credit = await stream.results(1)
    assert json.loads(result.result_json) == {"greeting": "Hello, Ada!"}
    assert credit == 1
    worker.signal(signal.SIGTERM)
    assert await worker.wait_async(STARTUP) == 0
    assert "Hello, Ada!" in worker.stdout()


async def test_a_group_sigterm_lets_a_cpu_task_finish(
    scheduler: ScriptedServer, spawn: Spawn
) -> None:
    """A service manager signals the whole process group: the pool's children ignore it,
    so the CPU task finishes while the worker drains."""
    scheduler.servicer.heartbeat_interval = 0.05
    worker = spawn(scheduler.address, "--cpu-workers=1", "--shutdown-grace=60")
    stream = await scheduler.servicer.next_stream(within=STARTUP)
    stream.lease(lease("c1", "cpu_process", payload=b'{"iterations": 1000000}'))
    await held(stream, "lease-c1")

    os.killpg(worker.pid, signal.SIGTERM)  # the worker runs in its own session
    await stream.expect("draining")
    [result], _ = await stream.results(1, within=60)
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED, result.error
    assert json.loads(result.result_json)["iterations"] == 1_000_000
    assert await worker.wait_async(STARTUP) == 0


async def test_shutdown_is_bounded_by_the_grace_even_for_cpu_tasks(
    scheduler: ScriptedServer, spawn: Spawn
) -> None:
    scheduler.servicer.heartbeat_interval = 0.05
    worker = spawn(scheduler.address, "--cpu-workers=1", "--shutdown-grace=0.2")
    stream = await scheduler.servicer.next_stream(within=STARTUP)
    stream.lease(lease("c1", "cpu_process", payload=b'{"iterations": 20000000}'))
    await held(stream, "lease-c1")

    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    [result], _ = await stream.results(1)
    assert result.outcome == Outcome.RESULT_OUTCOME_RETURNED
    assert await worker.wait_async(STARTUP) == 0
    assert time.monotonic() - started < 10  # 20M rounds take far longer: the child was killed
    assert "abandoned" in worker.stderr()
