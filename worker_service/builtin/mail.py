"""``send_email`` (AsyncTaskProcessor): through SMTP when configured, else into an outbox.

A plain function, so it runs in a thread: ``smtplib`` and file writes block. Without
``--smtp-host`` the message is written as an RFC 5322 ``.eml`` file named after the task id
in ``--outbox-dir``, which any mail client opens, and which a test reads back; a retried
attempt overwrites the same file, so the outbox never holds a task's mail twice.
"""

from __future__ import annotations

import re
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from ..context import HandlerSettings, TaskContext
from ..errors import PermanentError, TaskFailed
from ..registry import handler
from ._payload import file_name, optional_str, write_atomically

#: ``local@domain``: a pragmatic shape check, not RFC 5321's full grammar.
ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?")
SMTP_TIMEOUT_SECONDS = 30.0


def recipients(payload: dict[str, Any]) -> list[str]:
    """``to``: one address, a comma-separated string, or a list of addresses."""
    value = payload.get("to")
    if value is None or value == "" or value == []:
        raise PermanentError("payload field 'to' is required (an email address)")
    if isinstance(value, str):
        addresses = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        addresses = [item.strip() for item in value]
    else:
        raise PermanentError(f"payload field 'to' must be an address or a list, got {value!r}")
    for address in addresses:
        if not ADDRESS.fullmatch(address):
            raise PermanentError(f"payload field 'to': {address!r} is not an email address")
    return addresses


def build_message(
    payload: dict[str, Any], to: list[str], task_id: str, settings: HandlerSettings
) -> EmailMessage:
    message = EmailMessage()
    try:
        message["From"] = settings.smtp_from
        message["To"] = ", ".join(to)
        message["Subject"] = optional_str(payload, "subject", "")
    except ValueError as exc:  # a header with a line break: refused by the email package
        raise PermanentError(f"cannot build the message: {exc}") from exc
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="task-orchestrator.invalid")
    message["X-Orchestrator-Task-Id"] = task_id
    message.set_content(optional_str(payload, "body", ""))
    return message


def send_smtp(message: EmailMessage, settings: HandlerSettings) -> None:
    try:
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS
        ) as smtp:
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(sorted(exc.recipients))
        raise PermanentError(f"smtp refused the recipient(s) {refused}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        where = f"{settings.smtp_host}:{settings.smtp_port}"
        raise TaskFailed(f"smtp failed: {where}: {str(exc) or type(exc).__name__}") from exc


@handler("send_email")
def send_email(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """``{"to", "subject"?, "body"?}``; result ``{"delivered_via": "smtp" | "outbox",
    "path"?: the .eml file, "to": [addresses]}``."""
    settings = ctx.settings
    to = recipients(payload)
    message = build_message(payload, to, ctx.task_id, settings)
    if settings.smtp_host:
        send_smtp(message, settings)
        print(f"Email to {', '.join(to)} sent via {settings.smtp_host}", flush=True)
        return {"delivered_via": "smtp", "to": to}
    path = settings.outbox_dir / file_name(ctx.task_id, ".eml")
    write_atomically(path, message.as_bytes())
    print(f"Email to {', '.join(to)} written to {path}", flush=True)
    return {"delivered_via": "outbox", "path": str(path), "to": to}
