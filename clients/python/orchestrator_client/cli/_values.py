"""Command-line text to values: durations, times, ``key=value`` pairs, JSON payloads.

Each parser raises ``ValueError`` with a message fit for the user; ``_parser`` turns that into
an argparse error naming the option.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# "ms" before "m", so that "500ms" is not read as 500 minutes and a stray "s".
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")
_WHOLE = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+")


def parse_duration(text: str) -> float:
    """Seconds in ``"30s"``, ``"2m"``, ``"1h30m"``, ``"500ms"``, ``"1.5h"`` or ``"45"``.

    A bare number is seconds. Units: ms, s, m, h, d; parts add up. Negative, infinite and
    empty durations are refused.
    """
    cleaned = text.strip().lower()
    if re.fullmatch(_NUMBER, cleaned):
        return float(cleaned)
    if not _WHOLE.fullmatch(cleaned):
        raise ValueError(f"invalid duration {text!r}; use e.g. 30s, 2m, 1h30m, 500ms or 45")
    total = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(cleaned))
    if not math.isfinite(total):
        raise ValueError(f"duration {text!r} is too large")
    return total


def format_duration(seconds: float) -> str:
    """For display, the inverse of :func:`parse_duration`: ``5400`` -> ``"1h30m"``."""
    millis = round(seconds * 1000)
    if millis < 1000:
        return f"{millis}ms" if millis else "0s"
    whole, millis = divmod(millis, 1000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{whole}.{millis:03d}".rstrip("0") + "s")
    elif whole:
        parts.append(f"{whole}s")
    return "".join(parts)


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time; without an offset it is taken as local time."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}; use ISO 8601, e.g. 2026-05-01T14:30:00+02:00"
        ) from None
    return value if value.tzinfo is not None else value.astimezone()


def parse_key_value(text: str) -> tuple[str, str]:
    """``"team=billing"`` -> ``("team", "billing")``; the value may contain ``=``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected key=value, got {text!r}")
    return key.strip(), value


def parse_param_value(text: str) -> Any:
    """A ``-p key=value`` value: JSON when it parses (``3``, ``true``, ``[1]``), else the text.

    So ``-p n=3`` sends the number 3 and ``-p name=ada`` the string ``"ada"``; quote to force
    a string: ``-p 'n="3"'``.
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def load_payload(text: str) -> dict[str, Any]:
    """The ``--payload`` object: inline JSON, or ``@path`` to read it from a file."""
    source = "payload"
    if text.startswith("@"):
        path = Path(text[1:])
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{source} must be a JSON object, got {type(value).__name__}")
    return value
