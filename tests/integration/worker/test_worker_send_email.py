"""``send_email`` through a real (tiny, stdlib-only) SMTP server, and into the outbox,
run by the TaskRunner in its thread pool as the worker runs it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from orchestrator.v1 import worker_service_pb2 as pb
from tests.integration.worker.doubles import lease
from worker_service import HandlerSettings
from worker_service.builtin import mail
from worker_service.registry import HandlerRegistry
from worker_service.runner import Executors, TaskRunner

Outcome = pb.ResultOutcome


@dataclass
class SmtpSink:
    """Just enough SMTP (RFC 5321) for smtplib: accepts mail, refuses ``refused@…``."""

    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        reply("220 sink ESMTP")
        data: list[bytes] | None = None
        while line := await reader.readline():
            if data is not None:
                if line == b".\r\n":
                    self.messages.append(message_from_bytes(b"".join(data), policy=policy.default))
                    data = None
                    reply("250 queued")
                else:
                    data.append(line[1:] if line.startswith(b"..") else line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                reply("250-sink")
                reply("250 8BITMIME")
            elif verb == b"RCPT":
                address = line.decode().partition(":")[2].strip().strip("<>")
                if address.startswith("refused@"):
                    reply("550 no such user")
                else:
                    self.recipients.append(address)
                    reply("250 ok")
            elif verb == b"DATA":
                data = []
                reply("354 go ahead")
            elif verb == b"QUIT":
                reply("221 bye")
                break
            else:  # HELO, MAIL, RSET, NOOP
                reply("250 ok")
            await writer.drain()
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def executors() -> Iterator[Executors]:
    pools = Executors(threads=2, processes=1)
    yield pools
    pools.shutdown(wait=True)


def runner_for(executors: Executors, **settings: Any) -> TaskRunner:
    registry = HandlerRegistry()
    registry.add(mail.send_email)
    return TaskRunner(registry, executors, HandlerSettings(**settings), "w")


def email_lease(task_id: str, **payload: object) -> pb.Lease:
    return lease(task_id, "send_email", payload=json.dumps(payload).encode())


async def test_send_through_smtp(smtp: SmtpSink, executors: Executors) -> None:
    runner = runner_for(
        executors, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="bot@example.com"
    )
    message = email_lease("E1", to=["a@example.com", "b@example.com"], subject="Hi", body="Body ✓")
    result = await runner.execute(runner.job(message))

    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED, result.error
    assert json.loads(result.result_json) == {
        "delivered_via": "smtp",
        "to": ["a@example.com", "b@example.com"],
    }
    [received] = smtp.messages
    assert received["Subject"] == "Hi"
    assert received["From"] == "bot@example.com"
    assert received["X-Orchestrator-Task-Id"] == "E1"
    assert received.get_content().strip() == "Body ✓"
    assert smtp.recipients == ["a@example.com", "b@example.com"]


async def test_a_refused_recipient_fails_for_good(smtp: SmtpSink, executors: Executors) -> None:
    runner = runner_for(executors, smtp_host="127.0.0.1", smtp_port=smtp.port)
    result = await runner.execute(runner.job(email_lease("E2", to="refused@example.com")))
    assert result.outcome == Outcome.RESULT_OUTCOME_FAILED
    assert result.non_retryable
    assert result.error == "smtp refused the recipient(s) refused@example.com"


async def test_an_unreachable_smtp_server_is_retryable(executors: Executors) -> None:
    with socket.socket() as sock:  # bound, not listening: refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        runner = runner_for(executors, smtp_host="127.0.0.1", smtp_port=port)
        result = await runner.execute(runner.job(email_lease("E3", to="a@example.com")))
    assert result.outcome == Outcome.RESULT_OUTCOME_FAILED
    assert not result.non_retryable
    assert result.error.startswith(f"smtp failed: 127.0.0.1:{port}: ")
    assert "Connection refused" in result.error


async def test_without_smtp_the_mail_goes_to_the_outbox(
    tmp_path: Path, executors: Executors
) -> None:
    runner = runner_for(executors, outbox_dir=tmp_path / "outbox")
    message = email_lease("E4", to="ops@example.com", subject="Report ready", body="See attached.")
    first = await runner.execute(runner.job(message))
    again = await runner.execute(runner.job(message))  # a retry overwrites, never duplicates

    assert first.outcome == again.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
    result = json.loads(first.result_json)
    assert result["delivered_via"] == "outbox"
    path = Path(result["path"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["E4.eml"]
    parsed = message_from_bytes(await asyncio.to_thread(path.read_bytes), policy=policy.default)
    assert parsed["To"] == "ops@example.com"
    assert parsed["Subject"] == "Report ready"
    assert parsed["Date"] and parsed["Message-ID"]
    assert parsed.get_content().strip() == "See attached."
