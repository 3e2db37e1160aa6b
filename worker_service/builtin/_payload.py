"""Reading typed fields out of a task payload; a wrong field is a :class:`PermanentError`
naming it, because the same payload would fail the same way on every retry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import PermanentError


def number(payload: Mapping[str, Any], field: str) -> int | float:
    """A required finite number (``true``/``false`` are not numbers here)."""
    if field not in payload or payload[field] is None:
        raise PermanentError(f"payload field {field!r} is required (a number)")
    return _as_number(payload[field], field)


def optional_number(
    payload: Mapping[str, Any],
    field: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    value = payload.get(field)
    if value is None:
        return default
    result = _as_number(value, field)
    if (minimum is not None and result < minimum) or (maximum is not None and result > maximum):
        raise PermanentError(
            f"payload field {field!r} must be between {minimum} and {maximum}, got {result}"
        )
    return float(result)


def optional_int(
    payload: Mapping[str, Any], field: str, default: int, *, minimum: int, maximum: int
) -> int:
    value = payload.get(field)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PermanentError(f"payload field {field!r} must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise PermanentError(
            f"payload field {field!r} must be between {minimum} and {maximum}, got {value}"
        )
    return value


def optional_str(payload: Mapping[str, Any], field: str, default: str) -> str:
    value = payload.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise PermanentError(f"payload field {field!r} must be a string, got {value!r}")
    return value


def optional_bool(payload: Mapping[str, Any], field: str) -> bool:
    value = payload.get(field, False)
    if not isinstance(value, bool):
        raise PermanentError(f"payload field {field!r} must be true or false, got {value!r}")
    return value


def _as_number(value: Any, field: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentError(f"payload field {field!r} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise PermanentError(f"payload field {field!r} must be a finite number, got {value}")
    return value


def file_name(task_id: str, suffix: str) -> str:
    """A file name made from a task id, safe whatever characters the id holds."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in task_id).lstrip(".")
    return (safe or "task") + suffix


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader never sees half a file (a retried attempt
    overwrites the same file: the outcome is idempotent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
