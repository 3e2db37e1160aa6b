"""Bearer tokens on real processes: who may call what, tenancy RPC by RPC, /metrics, logs.

The scheduler listens on loopback without TLS here (tokens as plain metadata, the
development set-up); tests/e2e/test_tls.py covers TLS and mutual TLS.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from orchestrator_client import Client, PermissionDenied, Unauthenticated
from scheduler_service.api import page_tokens
from scheduler_service.domain.model import TaskFilter
from tests.support.clis import taskctl_command
from tests.support.cluster import Cluster
from tests.support.commands import clean_environment, run_command
from tests.support.polling import eventually
from tests.support.processes import SchedulerProcess
from tests.support.secure import Credentials, write_tokens

pytestmark = pytest.mark.slow

ALICE = "alice-token-5e0f1c2d3b4a59687766"
BOB = "bob-token-0a1b2c3d4e5f60718293a4"
WORKER = "worker-token-ffeeddccbbaa99887766"
ADMIN = "admin-token-1029384756abcdefabcd"
WRONG = "wrong-token-9999999999999999999"
TOKENS = {
    ALICE: ("client", "alice"),
    BOB: ("client", "bob"),
    WORKER: ("worker", "workers"),
    ADMIN: ("admin", "ops"),
}
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
LATER = timestamp_pb2.Timestamp(seconds=int(time.time()) + 86_400)  # a day ahead


async def start(cluster: Cluster, *extra: str) -> SchedulerProcess:
    tokens = write_tokens(cluster.dir / "tokens", TOKENS)
    return await cluster.start_scheduler(
        "--auth-tokens", str(tokens), "--task-types", "sum2,foo", *extra
    )


@pytest.fixture
async def people(cluster: Cluster) -> AsyncIterator[dict[str, Credentials]]:
    scheduler = await start(cluster)
    found = {
        name: Credentials(scheduler.grpc_address, token=token)
        for name, token in (("alice", ALICE), ("bob", BOB), ("admin", ADMIN), ("worker", WORKER))
    }
    found["nobody"] = Credentials(scheduler.grpc_address)
    found["wrong"] = Credentials(scheduler.grpc_address, token=WRONG)
    try:
        yield found
    finally:
        for credentials in found.values():
            await credentials.close()


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def stream_status(call: Any) -> tuple[grpc.StatusCode, str]:
    """How a server stream ends (after its first message, or at once)."""

    async def first() -> None:
        async for _ in call:
            return

    try:
        await asyncio.wait_for(first(), 10)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    finally:
        call.cancel()
    return grpc.StatusCode.OK, ""


def create(**fields: Any) -> task_service_pb2.CreateTaskRequest:
    fields.setdefault("type", "sum2")
    return task_service_pb2.CreateTaskRequest(**fields)


async def test_who_may_call_what(people: dict[str, Credentials]) -> None:
    nobody, wrong = people["nobody"], people["wrong"]
    alice, worker, admin = people["alice"], people["worker"], people["admin"]
    stats = admin_service_pb2.GetStatsRequest()
    listing = task_service_pb2.ListTasksRequest()

    code, details = await status_of(nobody.tasks().ListTasks(listing))
    assert code == UNAUTHENTICATED and "missing credentials" in details
    code, details = await status_of(wrong.tasks().ListTasks(listing, metadata=wrong.metadata))
    assert code == UNAUTHENTICATED and details == "invalid token"
    code, details = await status_of(alice.admin().GetStats(stats, metadata=alice.metadata))
    assert code == PERMISSION_DENIED and "needs the role admin" in details
    code, _ = await status_of(worker.tasks().ListTasks(listing, metadata=worker.metadata))
    assert code == PERMISSION_DENIED
    assert (await status_of(alice.tasks().ListTasks(listing, metadata=alice.metadata)))[0] == (
        grpc.StatusCode.OK
    )
    assert (await status_of(admin.admin().GetStats(stats, metadata=admin.metadata)))[0] == (
        grpc.StatusCode.OK
    )
    # A stream is refused the same way, before it sends anything.
    watch = nobody.tasks().WatchTasks(task_service_pb2.WatchTasksRequest())
    assert (await stream_status(watch))[0] == UNAUTHENTICATED

    # Health is open; reflection needs a token (any role).
    health = health_pb2_grpc.HealthStub(nobody.channel())
    answer = await health.Check(health_pb2.HealthCheckRequest())
    assert answer.status == health_pb2.HealthCheckResponse.SERVING

    def list_services(credentials: Credentials) -> Any:
        stub = reflection_pb2_grpc.ServerReflectionStub(credentials.channel())
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        return stub.ServerReflectionInfo(iter([request]), metadata=credentials.metadata)

    assert (await stream_status(list_services(nobody)))[0] == UNAUTHENTICATED
    assert (await stream_status(list_services(worker)))[0] == grpc.StatusCode.OK


async def test_the_python_client_and_taskctl_carry_the_token(
    cluster: Cluster, people: dict[str, Credentials]
) -> None:
    address = people["alice"].address
    await cluster.start_worker(wait=False, extra_env={"ORCHESTRATOR_TOKEN": WORKER})
    await people["admin"].wait_for_worker(cluster.workers[-1].name)

    def with_client() -> task_pb2.Task:
        with Client(address, token=ALICE, client_id="pretend-to-be-bob") as client:
            task = client.create_task("sum2", {"first": 2, "second": 3})
            return client.wait_for_task(task.id, timeout=30)

    done = await asyncio.to_thread(with_client)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED and done.client == "alice"

    def refused(token: str | None, call: Callable[[Client], object]) -> type[Exception]:
        with Client(address, token=token) as client:
            try:
                call(client)
            except (Unauthenticated, PermissionDenied) as error:
                return type(error)
        raise AssertionError("not refused")

    assert await asyncio.to_thread(refused, None, lambda c: c.list_tasks()) is Unauthenticated
    assert await asyncio.to_thread(refused, BOB, lambda c: c.get_stats()) is PermissionDenied

    base = [*taskctl_command(), "--scheduler", address, "--json", "--timeout", "10s"]
    env = clean_environment(ORCHESTRATOR_TOKEN=BOB)
    made = await run_command(
        [*base, "create", "sum2", "-p", "first=1", "-p", "second=1", "--wait"], env=env
    )
    assert made.returncode == 0, made
    assert made.json_values()[-1]["client"] == "bob"
    flag = await run_command([*base, "--token", ALICE, "list"], env=env)  # the flag wins
    assert {t["client"] for t in flag.json()["tasks"]} == {"alice"}
    without = await run_command([*base, "list"])
    assert without.returncode == 3 and "UNAUTHENTICATED" in without.stderr
    denied = await run_command([*base, "stats"], env=env)
    assert denied.returncode == 3 and "PERMISSION_DENIED" in denied.stderr


async def test_workers_need_a_worker_token(cluster: Cluster) -> None:
    scheduler = await start(cluster)
    admin = Credentials(scheduler.grpc_address, token=ADMIN)
    try:
        good = await cluster.start_worker(wait=False, extra_env={"ORCHESTRATOR_TOKEN": WORKER})
        await admin.wait_for_worker(good.name)
        for env in ({}, {"ORCHESTRATOR_TOKEN": ALICE}, {"ORCHESTRATOR_TOKEN": WRONG}):
            refused = await cluster.start_worker(wait=False, extra_env=env)
            assert await refused.wait_async(30) == 1, refused.dump()
            assert "the scheduler refused this worker" in refused.stderr()
        # A worker token may not use the task API.
        tasks = Credentials(scheduler.grpc_address, token=WORKER)
        code, _ = await status_of(tasks.tasks().CreateTask(create(), metadata=tasks.metadata))
        assert code == PERMISSION_DENIED
        await tasks.close()
    finally:
        await admin.close()


async def test_tenancy_rpc_by_rpc(people: dict[str, Credentials]) -> None:
    alice, bob, admin = people["alice"], people["bob"], people["admin"]
    a, b, ad = alice.tasks(), bob.tasks(), admin.tasks()
    am, bm, adm = alice.metadata, bob.metadata, admin.metadata

    # The orchestrator-client header is ignored: the token's principal is the client.
    mine = await a.CreateTask(create(run_at=LATER), metadata=(*am, ("orchestrator-client", "bob")))
    assert mine.client == "alice"
    cancelled = await a.CreateTask(create(run_at=LATER), metadata=am)
    await a.CancelTask(task_service_pb2.CancelTaskRequest(id=cancelled.id), metadata=am)
    bobs = await b.CreateTask(create(run_at=LATER), metadata=bm)
    assert bobs.client == "bob"
    batch = await b.BatchCreateTasks(
        task_service_pb2.BatchCreateTasksRequest(tasks=[create(run_at=LATER)]), metadata=bm
    )
    assert batch.tasks[0].client == "bob"
    missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

    async def refusals(task_id: str) -> dict[str, tuple[grpc.StatusCode, str]]:
        def req(cls: Any) -> Any:
            return cls(id=task_id)

        found = {
            "GetTask": await status_of(
                b.GetTask(req(task_service_pb2.GetTaskRequest), metadata=bm)
            ),
            "CancelTask": await status_of(
                b.CancelTask(req(task_service_pb2.CancelTaskRequest), metadata=bm)
            ),
            "RunTask": await status_of(
                b.RunTask(req(task_service_pb2.RunTaskRequest), metadata=bm)
            ),
            "ExplainTask": await status_of(
                b.ExplainTask(req(task_service_pb2.ExplainTaskRequest), metadata=bm)
            ),
            "DeleteTask": await status_of(
                b.DeleteTask(req(task_service_pb2.DeleteTaskRequest), metadata=bm)
            ),
            "WatchTask": await stream_status(
                b.WatchTask(req(task_service_pb2.WatchTaskRequest), metadata=bm)
            ),
        }
        return {
            name: (code, details.replace(task_id, "<id>"))
            for name, (code, details) in found.items()
        }

    foreign = await refusals(mine.id)
    assert foreign == await refusals(missing), "another client's task must look like no task"
    assert all(code == NOT_FOUND for code, _ in foreign.values()), foreign
    retry = task_service_pb2.RetryTaskRequest(id=cancelled.id)
    code, details = await status_of(b.RetryTask(retry, metadata=bm))
    assert (code, details) == (NOT_FOUND, f"task {cancelled.id} not found")
    # Nothing happened to alice's tasks; she and the admin still see them.
    for stub, metadata in ((a, am), (ad, adm)):
        got = await stub.GetTask(task_service_pb2.GetTaskRequest(id=mine.id), metadata=metadata)
        assert got.state == task_pb2.TASK_STATE_SCHEDULED
    got = await a.GetTask(task_service_pb2.GetTaskRequest(id=cancelled.id), metadata=am)
    assert got.state == task_pb2.TASK_STATE_CANCELLED
    # Alice herself may do each of these to her own task.
    await a.ExplainTask(task_service_pb2.ExplainTaskRequest(id=mine.id), metadata=am)
    await a.RetryTask(retry, metadata=am)

    # Lists: a client sees its own tasks only; naming another client is refused.
    async def listed(stub: Any, metadata: Any, **fields: Any) -> set[str]:
        answer = await stub.ListTasks(
            task_service_pb2.ListTasksRequest(**fields), metadata=metadata
        )
        return {t.client for t in answer.tasks}

    assert await listed(b, bm) == {"bob"}
    assert await listed(b, bm, client="bob") == {"bob"}
    assert await listed(a, am) == {"alice"}
    assert await listed(ad, adm) == {"alice", "bob"}
    assert await listed(ad, adm, client="alice") == {"alice"}
    code, details = await status_of(
        b.ListTasks(task_service_pb2.ListTasksRequest(client="alice"), metadata=bm)
    )
    assert code == INVALID_ARGUMENT and details.startswith("client: must be empty or 'bob'")

    # Page tokens: alice's token is no use to bob; a forged one for bob's own listing still
    # reads bob's rows only (the client filter is applied on every page).
    page = await a.ListTasks(task_service_pb2.ListTasksRequest(page_size=1), metadata=am)
    assert page.next_page_token
    code, _ = await status_of(
        b.ListTasks(task_service_pb2.ListTasksRequest(page_token=page.next_page_token), metadata=bm)
    )
    assert code == INVALID_ARGUMENT
    bob_filter = page_tokens.filter_key(TaskFilter(client="bob"))
    forged = page_tokens.encode("~", page_tokens.fingerprint([bob_filter, True]))
    answer = await b.ListTasks(task_service_pb2.ListTasksRequest(page_token=forged), metadata=bm)
    assert {t.client for t in answer.tasks} == {"bob"}
    oldest_first = page_tokens.encode("0", page_tokens.fingerprint([bob_filter, False]))
    answer = await b.ListTasks(
        task_service_pb2.ListTasksRequest(page_token=oldest_first, order_by="created_at asc"),
        metadata=bm,
    )
    assert {t.client for t in answer.tasks} == {"bob"}

    # WatchTasks: bob hears of his own changes only, even naming no client; the deletion of
    # alice's task does not reach him, his own does.
    # From a listed revision, so the watch misses nothing whenever its stream starts.
    before = await b.ListTasks(task_service_pb2.ListTasksRequest(), metadata=bm)
    watch = b.WatchTasks(
        task_service_pb2.WatchTasksRequest(since_revision=before.revision), metadata=bm
    )
    events: list[task_service_pb2.TaskEvent] = []

    async def collect() -> None:
        async for event in watch:
            events.append(event)

    collector = asyncio.create_task(collect())
    try:
        hers = await a.CreateTask(create(run_at=LATER), metadata=am)
        his = await b.CreateTask(create(run_at=LATER), metadata=bm)
        await a.DeleteTask(task_service_pb2.DeleteTaskRequest(id=hers.id), metadata=am)
        await b.DeleteTask(task_service_pb2.DeleteTaskRequest(id=his.id), metadata=bm)
        deleted = task_service_pb2.TASK_EVENT_TYPE_DELETED
        await eventually(
            lambda: any(e.type == deleted and e.task.id == his.id for e in events),
            timeout=10,
            message="bob's deletion",
        )  # events come in revision order: anything about hers would have come before
    finally:
        watch.cancel()
        await asyncio.gather(collector, return_exceptions=True)
    seen = {e.task.id for e in events}
    assert his.id in seen and hers.id not in seen and mine.id not in seen
    assert {e.task.client for e in events if e.task.client} == {"bob"}

    # DeleteTasks: bob's "delete everything" deletes his tasks only, and still needs the
    # confirmation when he names no filter.
    code, details = await status_of(
        b.DeleteTasks(task_service_pb2.DeleteTasksRequest(), metadata=bm)
    )
    assert code == INVALID_ARGUMENT and "confirm_all" in details
    code, _ = await status_of(
        b.DeleteTasks(task_service_pb2.DeleteTasksRequest(client="alice"), metadata=bm)
    )
    assert code == INVALID_ARGUMENT
    gone = await b.DeleteTasks(task_service_pb2.DeleteTasksRequest(confirm_all=True), metadata=bm)
    assert gone.deleted_count == 2
    assert await listed(ad, adm) == {"alice"}
    assert await listed(b, bm) == set()


async def test_explain_hides_another_clients_task(people: dict[str, Credentials]) -> None:
    """A group is shared between clients: bob learns his task waits, not for which task."""
    alice, bob = people["alice"], people["bob"]
    a, b = alice.tasks(), bob.tasks()
    first = await a.CreateTask(create(group="shared"), metadata=alice.metadata)
    second = await b.CreateTask(create(group="shared"), metadata=bob.metadata)
    answer = await b.ExplainTask(
        task_service_pb2.ExplainTaskRequest(id=second.id), metadata=bob.metadata
    )
    text = str(answer)
    assert first.id not in text, text
    blocked = [r for r in answer.reasons if r.code == task_service_pb2.REASON_CODE_GROUP_BLOCKED]
    assert blocked and blocked[0].blocking_task_id == ""
    assert "another client's task" in blocked[0].message
    # The admin sees the id.
    admin = people["admin"]
    full = await admin.tasks().ExplainTask(
        task_service_pb2.ExplainTaskRequest(id=second.id), metadata=admin.metadata
    )
    assert any(r.blocking_task_id == first.id for r in full.reasons)


def http_get(url: str, token: str | None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


async def test_metrics_need_the_admin_token_and_tokens_never_reach_the_logs(
    cluster: Cluster,
) -> None:
    scheduler = await start(cluster)  # --log-level debug (FAST_SCHEDULER)
    base = f"http://{scheduler.http_address}"
    codes = {
        name: await asyncio.to_thread(http_get, f"{base}/metrics", token)
        for name, token in (
            ("none", None),
            ("wrong", WRONG),
            ("client", ALICE),
            ("worker", WORKER),
            ("admin", ADMIN),
        )
    }
    assert codes == {"none": 401, "wrong": 401, "client": 403, "worker": 403, "admin": 200}
    assert await asyncio.to_thread(http_get, f"{base}/healthz", None) == 200
    assert await asyncio.to_thread(http_get, f"{base}/readyz", None) == 200

    # Failed and successful calls with every token, on the gRPC side too.
    worker = await cluster.start_worker(wait=False, extra_env={"ORCHESTRATOR_TOKEN": WORKER})
    for token in (WRONG, ALICE, ADMIN):
        credentials = Credentials(scheduler.grpc_address, token=token)
        await status_of(credentials.tasks().CreateTask(create(), metadata=credentials.metadata))
        await status_of(
            credentials.admin().GetStats(
                admin_service_pb2.GetStatsRequest(), metadata=credentials.metadata
            )
        )
        await credentials.close()
    admin = Credentials(scheduler.grpc_address, token=ADMIN)
    await admin.wait_for_worker(worker.name)
    await admin.close()
    scheduler.terminate()
    worker.terminate()
    logs = scheduler.stdout() + scheduler.stderr()
    assert "call refused: invalid token" in logs  # the failure was logged…
    assert "metrics refused" in logs
    for token in TOKENS.keys() | {WRONG}:  # …without the token
        assert token not in logs, f"a token is in the scheduler's log:\n{logs[-3000:]}"
        assert token not in worker.stdout() + worker.stderr()


async def test_the_scheduler_refuses_to_listen_on_all_interfaces_without_auth(
    tmp_path: Path,
) -> None:
    base = [sys.executable, "-m", "scheduler_service", "--database", str(tmp_path / "x.db")]
    for extra in (
        ["--listen", "0.0.0.0:0", "--http-listen", "off"],
        ["--http-listen", "0.0.0.0:0"],
        ["--listen", "0.0.0.0:0", "--http-listen", "off", "--auth-tokens", "/dev/null"],
    ):
        result = await run_command([*base, *extra], within=30)
        assert result.returncode == 2, result
        if "--auth-tokens" in extra:
            assert "--auth-tokens /dev/null" in result.stderr  # not a regular file
        else:
            assert "refusing to listen on 0.0.0.0:0" in result.stderr, result
            assert "--insecure" in result.stderr
    tokens = write_tokens(tmp_path / "tokens", TOKENS)
    result = await run_command(
        [*base, "--listen", "0.0.0.0:0", "--http-listen", "off", "--auth-tokens", str(tokens)],
        within=30,
    )
    assert result.returncode == 2 and "without TLS" in result.stderr, result
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened


async def test_the_development_worker_gets_a_token_of_its_own(cluster: Cluster) -> None:
    """Through its environment, where the scheduler's tokens are not."""
    lines = "\n".join(f"{token} {role} {who}" for token, (role, who) in TOKENS.items())
    scheduler = await cluster.start_scheduler(
        "--task-types", "sum2", "--with-worker", "--worker-arg=--foo-seconds=0.1",
        env={"ORCHESTRATOR_AUTH_TOKENS": lines},
    )  # fmt: skip
    found = re.findall(r"started development worker pid=(\d+)", scheduler.stderr())
    environ = Path(f"/proc/{found[-1]}/environ").read_bytes().split(b"\0")
    names = {entry.partition(b"=")[0] for entry in environ}
    assert b"ORCHESTRATOR_TOKEN" in names and b"ORCHESTRATOR_AUTH_TOKENS" not in names
    alice = Credentials(scheduler.grpc_address, token=ALICE)
    admin = Credentials(scheduler.grpc_address, token=ADMIN)
    try:
        workers = await admin.admin().ListWorkers(
            admin_service_pb2.ListWorkersRequest(), metadata=admin.metadata
        )
        assert len(workers.workers) == 1  # connected before the scheduler said it was ready
        stub = alice.tasks()
        payload = struct_pb2.Struct()
        payload.update({"first": 1, "second": 2})
        task = await stub.CreateTask(create(payload=payload), metadata=alice.metadata)
        watch = stub.WatchTask(
            task_service_pb2.WatchTaskRequest(id=task.id), metadata=alice.metadata
        )
        states = [event.task.state async for event in watch]
        assert states[-1] == task_pb2.TASK_STATE_SUCCEEDED, scheduler.dump()
    finally:
        await alice.close()
        await admin.close()
    assert "dev-worker" not in scheduler.args
