"""The Node example client (clients/node/create_and_wait.js) as a real subprocess against
real scheduler and worker processes: the printed task, the exit status, the gRPC errors,
and a token over TLS.

Its node_modules must be installed beforehand (the test never reaches the network): without
``node`` or them, the tests are skipped, or fail when ``ORCHESTRATOR_REQUIRE_NODE=1`` (CI
sets it, so that nothing is skipped there unseen).
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.commands import (
    BackgroundCommand,
    CommandResult,
    clean_environment,
    parse_time,
    run_command,
)
from tests.support.pki import CertificateAuthority
from tests.support.polling import eventually
from tests.support.secure import Credentials, tls_config, write_tokens

NODE_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
INSTALL = "npm ci --prefix clients/node"
# create_and_wait.js's exit statuses (its header comment; the same as taskctl's).
EXIT_SUCCEEDED, EXIT_UNSUCCESSFUL, EXIT_USAGE, EXIT_RPC_ERROR, EXIT_UNREACHABLE = 0, 1, 2, 3, 4


@pytest.fixture
def node_client() -> list[str]:
    """``node create_and_wait.js``; skipped (or failed, when required) if it cannot run.

    Tests list this fixture before ``cluster`` so that a skip starts no process.
    """
    node = shutil.which("node")
    if node is None:
        missing = f"node is not on PATH: install Node.js 20 or later, then `{INSTALL}`"
    elif not (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        missing = f"{NODE_CLIENT / 'node_modules'} is missing: run `{INSTALL}`"
    else:
        return [node, str(NODE_CLIENT / "create_and_wait.js")]
    if os.environ.get("ORCHESTRATOR_REQUIRE_NODE") == "1":
        pytest.fail(f"{missing} (ORCHESTRATOR_REQUIRE_NODE=1: no skipping)")
    pytest.skip(missing)


async def run_node(
    node_client: list[str], *args: str, env: dict[str, str] | None = None
) -> CommandResult:
    return await run_command([*node_client, *args], within=60, env=env or clean_environment())


def stderr_error(result: CommandResult, exit_status: int, code: str) -> str:
    """The message after ``error: CODE:`` on stderr, once the exit status is checked."""
    assert result.returncode == exit_status, str(result)
    assert result.stdout == "", str(result)
    prefix = f"error: {code}: "
    assert result.stderr.startswith(prefix), str(result)
    return result.stderr.removeprefix(prefix).strip()


async def test_creates_a_task_waits_for_it_and_prints_it(
    node_client: list[str], cluster: Cluster
) -> None:
    scheduler = await cluster.start_scheduler()
    worker = await cluster.start_worker()
    # The address from the environment, the client's name from a flag.
    env = clean_environment(ORCHESTRATOR_SCHEDULER=scheduler.grpc_address)
    result = await run_node(
        node_client, "--client-id", "node-example", "sum2", '{"first": 1.5, "second": 40}', env=env
    )

    assert result.returncode == EXIT_SUCCEEDED, str(result)
    task = result.json()
    assert task["type"] == "sum2"
    assert task["state"] == "TASK_STATE_SUCCEEDED"
    assert task["payload"] == {"first": 1.5, "second": 40}
    assert task["result"] == {"sum": 41.5}
    assert task["client"] == "node-example"
    assert task["attempts"] == 1
    (attempt,) = task["attempt_history"]
    assert attempt["outcome"] == "ATTEMPT_OUTCOME_SUCCEEDED"
    assert attempt["worker_id"] == worker.name
    # The proto3 JSON mapping: RFC 3339 times, int64 as a string, as grpcurl prints them.
    assert parse_time(task["created_at"]) <= parse_time(task["finished_at"])
    assert int(task["revision"]) > 0
    assert task["timeout"] == "600s"  # a Duration: the default per-attempt timeout
    # And it is the scheduler's task, as the scheduler tells it to another client.
    stored = await cluster.tasks().GetTask(task_service_pb2.GetTaskRequest(id=task["id"]))
    assert stored.result["sum"] == 41.5 and stored.revision == int(task["revision"])


async def test_a_failed_task_is_printed_and_exits_1(
    node_client: list[str], cluster: Cluster
) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker()
    result = await run_node(
        node_client, "--scheduler", scheduler.grpc_address, "--max-attempts", "1",
        "cpu_process", '{"fail": true, "iterations": 10}',
    )  # fmt: skip

    assert result.returncode == EXIT_UNSUCCESSFUL, str(result)
    task = result.json_values()[0]
    assert task["state"] == "TASK_STATE_FAILED"
    assert task["attempts"] == 1 and task["max_attempts"] == 1
    assert "fails on purpose" in task["error"]
    assert "result" not in task
    assert f"task {task['id']} ended TASK_STATE_FAILED: " in result.stderr


async def test_errors_print_the_status_code_and_message(
    node_client: list[str], cluster: Cluster
) -> None:
    scheduler = await cluster.start_scheduler("--task-types", "sum2")
    address = scheduler.grpc_address

    empty_type = await run_node(node_client, "--scheduler", address, "", '{"first": 1}')
    message = stderr_error(empty_type, EXIT_RPC_ERROR, "INVALID_ARGUMENT")
    assert message == "type: must not be empty"
    unknown_type = await run_node(node_client, "--scheduler", address, "sum3")
    message = stderr_error(unknown_type, EXIT_RPC_ERROR, "INVALID_ARGUMENT")
    assert "sum3" in message and "sum2" in message
    too_many = await run_node(node_client, "--scheduler", address, "--max-attempts", "1000", "sum2")
    assert "max_attempts" in stderr_error(too_many, EXIT_RPC_ERROR, "INVALID_ARGUMENT")

    # Bad command lines are refused before anything is sent.
    for args, problem in [
        (["sum2", "[1, 2]"], "PAYLOAD_JSON must be a JSON object"),
        (["sum2", "{first: 1}"], "PAYLOAD_JSON is not JSON"),
        (["--priority", "high", "sum2"], '--priority: expected an integer, got "high"'),
        (["--no-such-flag", "sum2"], "--no-such-flag"),
        ([], "expected TYPE"),
    ]:
        refused = await run_node(node_client, "--scheduler", address, *args)
        assert refused.returncode == EXIT_USAGE, str(refused)
        assert problem in refused.stderr, str(refused)
    listed = await cluster.tasks().ListTasks(task_service_pb2.ListTasksRequest())
    assert list(listed.tasks) == []  # not one of those calls created a task

    # No worker serves sum2 here: the task waits, and the wait runs out of time.
    late = await run_node(node_client, "--scheduler", address, "--timeout", "1", "sum2")
    assert "Deadline exceeded" in stderr_error(late, EXIT_RPC_ERROR, "DEADLINE_EXCEEDED")

    scheduler.signal(signal.SIGTERM)
    await scheduler.wait_async(30)
    unreachable = await run_node(node_client, "--scheduler", address, "sum2")
    message = stderr_error(unreachable, EXIT_UNREACHABLE, "UNAVAILABLE")
    assert f"is a scheduler listening at {address}?" in message


@pytest.mark.slow
async def test_the_wait_outlives_a_scheduler_restart(
    node_client: list[str], cluster: Cluster
) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker()
    env = clean_environment(ORCHESTRATOR_SCHEDULER=scheduler.grpc_address)
    async with await BackgroundCommand.start(
        [*node_client, "--timeout", "60", "foo", '{"seconds": 3}'], env=env
    ) as waiting:

        async def running() -> str | None:
            listed = await cluster.tasks().ListTasks(task_service_pb2.ListTasksRequest())
            return next(
                (t.id for t in listed.tasks if t.state == task_pb2.TASK_STATE_RUNNING), None
            )

        task_id = await eventually(running, timeout=20, message="the foo task runs")
        # The scheduler dies under the watch; a new one takes its port while the task runs.
        assert waiting.process.returncode is None  # still waiting on its watch
        scheduler.kill()
        await cluster.restart_scheduler(scheduler)
        result = await waiting.finish(within=60)

    assert result.returncode == EXIT_SUCCEEDED, f"{result}\n{cluster.dump()}"
    task = result.json()
    assert task["id"] == task_id and task["state"] == "TASK_STATE_SUCCEEDED"


@pytest.mark.slow
async def test_token_over_tls(node_client: list[str], cluster: Cluster) -> None:
    ca = CertificateAuthority(cluster.dir / "pki")
    server = ca.server()  # for "localhost"
    tokens = write_tokens(
        cluster.dir / "tokens",
        {
            "node-client-token-0123456789": ("client", "billing"),
            "node-worker-token-0123456789": ("worker", "workers"),
            "node-admin-token-01234567890": ("admin", "ops"),
        },
    )
    scheduler = await cluster.start_scheduler(
        "--tls-cert", str(server.cert), "--tls-key", str(server.key),
        "--auth-tokens", str(tokens), "--task-types", "sum2",
    )  # fmt: skip
    address = scheduler.grpc_address
    admin = Credentials(
        address,
        token="node-admin-token-01234567890",
        tls=tls_config(ca.cert, server_name="localhost"),
    )
    try:
        await cluster.start_worker(
            "--tls-ca", str(ca.cert), "--tls-server-name", "localhost",
            worker_id="node-worker", wait=False,
            extra_env={"ORCHESTRATOR_TOKEN": "node-worker-token-0123456789"},
        )  # fmt: skip
        await admin.wait_for_worker("node-worker")
    finally:
        await admin.close()

    trusted = clean_environment(
        ORCHESTRATOR_SCHEDULER=address,
        ORCHESTRATOR_TLS_CA=str(ca.cert),
        ORCHESTRATOR_TLS_SERVER_NAME="localhost",
    )
    made = await run_node(
        node_client, "sum2", '{"first": 20, "second": 22}',
        env={**trusted, "ORCHESTRATOR_TOKEN": "node-client-token-0123456789"},
    )  # fmt: skip
    assert made.returncode == EXIT_SUCCEEDED, str(made)
    task = made.json()
    assert task["result"] == {"sum": 42}
    assert task["client"] == "billing"  # the token's principal

    anonymous = await run_node(node_client, "sum2", env=trusted)
    assert "token" in stderr_error(anonymous, EXIT_RPC_ERROR, "UNAUTHENTICATED").lower()
    wrong = await run_node(node_client, "--token", "x" * 24, "sum2", env=trusted)
    stderr_error(wrong, EXIT_RPC_ERROR, "UNAUTHENTICATED")
    # Plaintext to a TLS port: the handshake never completes.
    plaintext = await run_node(
        node_client, "--scheduler", address, "--token", "node-client-token-0123456789", "sum2"
    )
    stderr_error(plaintext, EXIT_UNREACHABLE, "UNAVAILABLE")
