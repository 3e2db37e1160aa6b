"""Conversions between Python values and the protobuf well-known types of the contract.

Times inside the services are integers of microseconds since the Unix epoch (UTC); the
contract carries ``Timestamp`` and ``Duration``. JSON objects travel as ``Struct`` on the
client API and as UTF-8 JSON bytes on the worker stream.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

MICROS = 1_000_000


def struct_from_dict(value: Mapping[str, Any] | None) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if value:
        message.update(value)
    return message


def dict_from_struct(message: struct_pb2.Struct) -> dict[str, Any]:
    """A plain ``dict``; whole numbers come back as ``int`` rather than ``float``."""
    return _ints(json_format.MessageToDict(message))  # type: ignore[no-any-return]


def _ints(value: Any) -> Any:
    # Struct stores every number as a double; JSON users expect 3, not 3.0.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def dumps_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept; the same value, the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def struct_from_json(text: str | bytes) -> struct_pb2.Struct:
    return struct_from_dict(json.loads(text) if text else None)


def timestamp_from_micros(micros: int) -> timestamp_pb2.Timestamp:
    seconds, rest = divmod(micros, MICROS)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=rest * 1000)


def micros_from_timestamp(message: timestamp_pb2.Timestamp) -> int:
    return message.seconds * MICROS + message.nanos // 1000


def timestamp_from_datetime(value: dt.datetime) -> timestamp_pb2.Timestamp:
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value.astimezone(dt.UTC))
    return message


def datetime_from_timestamp(message: timestamp_pb2.Timestamp) -> dt.datetime:
    return message.ToDatetime(tzinfo=dt.UTC)


def duration_from_seconds(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromMicroseconds(round(seconds * MICROS))
    return message


def duration_from_micros(micros: int) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromMicroseconds(micros)
    return message


def seconds_from_duration(message: duration_pb2.Duration) -> float:
    return message.seconds + message.nanos / 1e9


def micros_from_duration(message: duration_pb2.Duration) -> int:
    return message.seconds * MICROS + message.nanos // 1000
