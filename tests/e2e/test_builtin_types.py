"""Every built-in task type, run end to end by a real worker process.

``bar`` and ``process_data`` fetch from a real aiohttp server on loopback started by the
test; nothing reaches beyond the machine. Loopback is not fetched unless allowed, so the
workers that fetch from it run with ``--fetch-allow 127.0.0.1``.
"""

from __future__ import annotations

import email
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.v1 import task_pb2
from tests.support.cluster import Cluster
from tests.support.http_site import local_site, refused_url
from tests.support.tasks import request, wait_terminal

ALLOW_LOOPBACK = ("--fetch-allow", "127.0.0.1")


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    async with local_site() as url:
        yield url


async def run(
    cluster: Cluster, type_name: str, payload: dict[str, object] | None = None, **fields: object
) -> task_pb2.Task:
    tasks = cluster.tasks()
    created = await tasks.CreateTask(request(type_name, payload, **fields))
    return await wait_terminal(tasks, created.id, timeout=30)


async def test_every_builtin_type_runs_and_prints_its_reference_output(
    cluster: Cluster, http_server: str, tmp_path: Path
) -> None:
    await cluster.start_scheduler()
    worker = await cluster.start_worker(
        "--bar-url", f"{http_server}/ok", "--fetch-url", f"{http_server}/ok", *ALLOW_LOOPBACK
    )

    foo = await run(cluster, "foo")
    assert foo.state == task_pb2.TASK_STATE_SUCCEEDED
    assert dict(foo.result) == {"message": f"Foo {foo.id}"}

    bar = await run(cluster, "bar")
    assert bar.state == task_pb2.TASK_STATE_SUCCEEDED and bar.result["status_code"] == 200
    bar404 = await run(cluster, "bar", {"url": f"{http_server}/missing"})
    assert bar404.state == task_pb2.TASK_STATE_SUCCEEDED  # the reference just prints the code
    assert bar404.result["status_code"] == 404

    baz = await run(cluster, "baz")
    number = int(baz.result["number"])
    assert 0 <= number <= 343

    processed = await run(cluster, "process_data", {"sleep_seconds": 0.1})
    assert processed.state == task_pb2.TASK_STATE_SUCCEEDED
    assert processed.result["bytes"] == 5 and processed.result["status_code"] == 200

    summed = await run(cluster, "sum2", {"first": 1, "second": 2})
    assert summed.result["sum"] == 3
    product = await run(cluster, "mult3", {"first": 2, "second": 3, "third": 4})
    assert product.result["product"] == 24
    surprise = await run(cluster, "surprise")
    assert surprise.state == task_pb2.TASK_STATE_SUCCEEDED and "surprise" in surprise.result

    mail = await run(
        cluster, "send_email", {"to": "ops@example.com", "subject": "hi", "body": "text"}
    )
    assert mail.result["delivered_via"] == "outbox"
    message = email.message_from_string(Path(mail.result["path"]).read_text())
    assert message["To"] == "ops@example.com" and message["Subject"] == "hi"

    report = await run(
        cluster, "generate_report", {"title": "weekly", "rows": [{"a": 1}, {"a": 3}]}
    )
    assert report.result["rows"] == 2 and Path(report.result["path"]).exists()

    cpu = await run(cluster, "cpu_process", {"iterations": 1000})
    assert cpu.state == task_pb2.TASK_STATE_SUCCEEDED and len(cpu.result["digest"]) == 64

    out = worker.stdout()
    for line in (f"Foo {foo.id}", "200", f"Baz {number}", f"Processed task {processed.id}"):
        assert line in out, f"{line!r} not printed by the worker"


async def test_failing_fetches_are_reported_as_the_references_report_them(
    cluster: Cluster, http_server: str
) -> None:
    await cluster.start_scheduler()
    await cluster.start_worker(*ALLOW_LOOPBACK)
    with refused_url() as unreachable:
        bar = await run(cluster, "bar", {"url": unreachable}, max_attempts=1)
    assert bar.state == task_pb2.TASK_STATE_FAILED
    assert bar.error.startswith("fetch failed:") and unreachable in bar.error

    processed = await run(
        cluster, "process_data", {"url": f"{http_server}/missing"}, max_attempts=1
    )
    assert processed.state == task_pb2.TASK_STATE_FAILED
    assert "fetch failed" in processed.error and "404" in processed.error

    # Allowing loopback opens nothing else: the cloud metadata address is refused, for good.
    metadata_url = "http://169.254.169.254/latest/meta-data/"
    metadata = await run(cluster, "process_data", {"url": metadata_url}, max_attempts=3)
    assert metadata.state == task_pb2.TASK_STATE_FAILED
    assert metadata.attempts == 1, "a refused target must not be retried"
    assert metadata.error == (
        f"fetch refused: {metadata_url} resolves to 169.254.169.254 "
        "(link-local, cloud metadata service); allow it with --fetch-allow"
    )

    no_url = await run(cluster, "bar", max_attempts=1)  # no payload url, no --bar-url
    assert no_url.state == task_pb2.TASK_STATE_FAILED and "url" in no_url.error

    bad_sum = await run(cluster, "sum2", {"first": 1}, max_attempts=3)
    assert bad_sum.state == task_pb2.TASK_STATE_FAILED
    assert bad_sum.attempts == 1, "a permanent error must not be retried"
    assert "second" in bad_sum.error


async def test_cpu_process_fails_on_request_then_succeeds_on_retry(cluster: Cluster) -> None:
    await cluster.start_scheduler()
    await cluster.start_worker()
    backoff = task_pb2.BackoffPolicy(jitter=0.0)
    backoff.initial.FromMilliseconds(100)
    task = await run(
        cluster,
        "cpu_process",
        {"fail_attempts": 2, "iterations": 100},
        max_attempts=3,
        backoff=backoff,
    )
    assert task.state == task_pb2.TASK_STATE_SUCCEEDED
    assert [a.outcome for a in task.attempt_history] == [
        task_pb2.ATTEMPT_OUTCOME_FAILED,
        task_pb2.ATTEMPT_OUTCOME_FAILED,
        task_pb2.ATTEMPT_OUTCOME_SUCCEEDED,
    ]
    assert task.result["iterations"] == 100


async def test_without_an_allowlist_the_worker_fetches_nothing_local(cluster: Cluster) -> None:
    seen: list[str] = []
    async with local_site(log=seen) as site:
        await cluster.start_scheduler()
        await cluster.start_worker("--bar-url", f"{site}/ok")
        for type_name in ("bar", "process_data"):
            task = await run(cluster, type_name, {"url": f"{site}/ok"}, max_attempts=3)
            assert task.state == task_pb2.TASK_STATE_FAILED
            assert task.attempts == 1, "a refused target must not be retried"
            assert task.error == (
                f"fetch refused: {site}/ok resolves to 127.0.0.1 (loopback); "
                "allow it with --fetch-allow"
            )
    assert seen == [], "the worker must not send anything to a refused target"
