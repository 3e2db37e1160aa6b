"""TLS and mutual TLS on real processes: scheduler, worker, taskctl, grpcurl, the Python
client and the HTTP side, with a certificate authority made for the test."""

from __future__ import annotations

import asyncio
import ssl
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestrator.v1 import admin_service_pb2
from orchestrator_client import AsyncClient
from tests.support.clis import grpcurl_path, taskctl_command
from tests.support.cluster import Cluster
from tests.support.commands import CommandResult, clean_environment, run_command
from tests.support.pki import CertificateAuthority, Pair
from tests.support.processes import SchedulerProcess
from tests.support.secure import Credentials, tls_config, write_tokens

pytestmark = pytest.mark.slow

TASKCTL_OK, TASKCTL_RPC_ERROR, TASKCTL_UNREACHABLE = 0, 3, 4


class Pki:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = CertificateAuthority(directory)
        self.server = self.ca.server()
        self.worker = self.ca.client("tls-worker", "worker")
        self.billing = self.ca.client("billing", "client")
        self.carol = self.ca.client("carol", "client")
        self.admin = self.ca.client("ops", "admin")
        self.no_role = self.ca.client("norole")
        self.stranger = CertificateAuthority(directory / "other", "other-ca").client(
            "billing", "client"
        )

    def server_flags(self, mutual: bool = True) -> list[str]:
        flags = ["--tls-cert", str(self.server.cert), "--tls-key", str(self.server.key)]
        return [*flags, "--tls-client-ca", str(self.ca.cert)] if mutual else flags


def client_flags(pki: Pki, pair: Pair | None) -> list[str]:
    flags = ["--tls-ca", str(pki.ca.cert)]
    if pair is not None:
        flags += ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key)]
    return flags


async def taskctl(address: str, *args: str, env: dict[str, str] | None = None) -> CommandResult:
    base = [*taskctl_command(), "--scheduler", address, "--json", "--timeout", "10s"]
    return await run_command([*base, *args], within=60, env=env)


def https_get(url: str, ca: Path, pair: Pair | None, token: str | None = None) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


async def test_mutual_tls_end_to_end(cluster: Cluster) -> None:
    pki = Pki(cluster.dir / "pki")
    for path in pki.dir.rglob("*.*"):  # keys and certificates alike
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    scheduler = await cluster.start_scheduler(*pki.server_flags(), "--task-types", "sum2")
    address = scheduler.grpc_address
    admin = Credentials(address, tls=tls_config(pki.ca.cert, pki.admin))
    try:
        # The worker claims another id in its hello: its certificate decides.
        worker = await cluster.start_worker(
            *client_flags(pki, pki.worker), "--tls-server-name", "localhost",
            worker_id="claimed-id", wait=False,
        )  # fmt: skip
        await admin.wait_for_worker("tls-worker")
        workers = await admin.admin().ListWorkers(admin_service_pb2.ListWorkersRequest())
        assert [w.id for w in workers.workers] == ["tls-worker"], worker.dump()

        made = await taskctl(
            address, *client_flags(pki, pki.billing), "--client-id", "someone-else",
            "create", "sum2", "-p", "first=20", "-p", "second=22", "--wait",
        )  # fmt: skip
        assert made.returncode == TASKCTL_OK, made
        task = made.json_values()[-1]
        assert task["client"] == "billing" and task["result"] == {"sum": 42}

        # The Python client with a client certificate; another client does not see it.
        async with AsyncClient(address, tls=tls_config(pki.ca.cert, pki.billing)) as client:
            assert (await client.get_task(task["id"])).client == "billing"
        other = await taskctl(address, *client_flags(pki, pki.carol), "get", task["id"])
        assert other.returncode == TASKCTL_RPC_ERROR and "NOT_FOUND" in other.stderr, other

        refusals = {
            "no client certificate": await taskctl(address, *client_flags(pki, None), "list"),
            "another CA's certificate": await taskctl(
                address, *client_flags(pki, pki.stranger), "list"
            ),
            "plaintext": await taskctl(address, "list"),
        }
        for why, result in refusals.items():
            assert result.returncode == TASKCTL_UNREACHABLE, f"{why}: {result}"
        no_role = await taskctl(address, *client_flags(pki, pki.no_role), "list")
        assert no_role.returncode == TASKCTL_RPC_ERROR and "names no role" in no_role.stderr
        # A client certificate is no admin.
        stats = await taskctl(address, *client_flags(pki, pki.billing), "stats")
        assert stats.returncode == TASKCTL_RPC_ERROR and "PERMISSION_DENIED" in stats.stderr

        # The HTTP side speaks TLS too; probes need no certificate, metrics an admin one.
        base = f"https://localhost:{scheduler.http_address.rpartition(':')[2]}"
        ca = pki.ca.cert
        assert await asyncio.to_thread(https_get, f"{base}/healthz", ca, None) == 200
        assert await asyncio.to_thread(https_get, f"{base}/metrics", ca, None) == 401
        assert await asyncio.to_thread(https_get, f"{base}/metrics", ca, pki.billing) == 403
        assert await asyncio.to_thread(https_get, f"{base}/metrics", ca, pki.admin) == 200
    finally:
        await admin.close()


async def start_exposed(cluster: Cluster, *extra: str) -> SchedulerProcess:
    """A scheduler on every interface (allowed: TLS and tokens), reached at 127.0.0.1."""
    scheduler = await cluster.start_scheduler(*extra, listen="0.0.0.0:0")
    scheduler.grpc_address = "127.0.0.1:" + scheduler.grpc_address.rpartition(":")[2]
    return scheduler


async def test_tls_with_tokens_for_worker_taskctl_and_grpcurl(cluster: Cluster) -> None:
    pki = Pki(cluster.dir / "pki")
    tokens = write_tokens(
        cluster.dir / "tokens",
        {
            "tls-client-token-0123456789": ("client", "billing"),
            "tls-worker-token-0123456789": ("worker", "workers"),
            "tls-admin-token-01234567890": ("admin", "ops"),
        },
    )
    scheduler = await start_exposed(
        cluster, *pki.server_flags(mutual=False), "--auth-tokens", str(tokens),
        "--task-types", "sum2",
    )  # fmt: skip
    address = scheduler.grpc_address
    trust = ["--tls-ca", str(pki.ca.cert), "--tls-server-name", "localhost"]
    admin = Credentials(
        address,
        token="tls-admin-token-01234567890",
        tls=tls_config(pki.ca.cert, server_name="localhost"),
    )
    try:
        await cluster.start_worker(
            *trust, worker_id="token-worker", wait=False,
            extra_env={"ORCHESTRATOR_TOKEN": "tls-worker-token-0123456789"},
        )  # fmt: skip
        await admin.wait_for_worker("token-worker")  # a token keeps the hello's id

        env = clean_environment(ORCHESTRATOR_TOKEN="tls-client-token-0123456789")
        made = await taskctl(
            address, *trust, "create", "sum2", "-p", "first=1", "-p", "second=2", "--wait", env=env
        )
        assert made.returncode == TASKCTL_OK, made
        assert made.json_values()[-1]["client"] == "billing"
        wrong = await taskctl(address, *trust, "--token", "x" * 20, "list")
        assert wrong.returncode == TASKCTL_RPC_ERROR and "UNAUTHENTICATED" in wrong.stderr

        grpcurl = [grpcurl_path(), "-cacert", str(pki.ca.cert), "-servername", "localhost"]
        bearer = ["-H", "authorization: Bearer tls-client-token-0123456789"]
        listed = await run_command([*grpcurl, *bearer, address, "list"], within=30)
        assert listed.returncode == 0 and "orchestrator.v1.TaskService" in listed.stdout, listed
        anonymous = await run_command([*grpcurl, address, "list"], within=30)
        assert anonymous.returncode != 0 and "Unauthenticated" in anonymous.stderr, anonymous
    finally:
        await admin.close()
