"""Opaque, stable page tokens: the last id seen plus a fingerprint of the request.

A token only continues the listing it came from: reusing it with other filters is
refused (AIP-158), and a forged or garbled one is INVALID_ARGUMENT, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from ..domain.errors import InvalidArgument
from ..domain.model import TaskFilter


def filter_key(flt: TaskFilter) -> list[object]:
    """The parts of a task filter that a page token must match (task_id only when set, so
    the tokens of listings without one keep their old fingerprint)."""
    key: list[object] = [
        sorted(int(s) for s in flt.states),
        sorted(flt.types),
        flt.client,
        flt.group,
        sorted(flt.labels.items()),
    ]
    if flt.task_id:
        key.append(flt.task_id)
    return key


def fingerprint(parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=sorted)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode(last: str, request_fingerprint: str) -> str:
    raw = json.dumps({"after": last, "fp": request_fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, request_fingerprint: str, field: str = "page_token") -> str | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after, fp = data["after"], data["fp"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidArgument(field, "is not a token this server issued") from None
    if not isinstance(after, str) or fp != request_fingerprint:
        raise InvalidArgument(
            field, "belongs to a listing with other filters or ordering; start again without it"
        )
    return after
