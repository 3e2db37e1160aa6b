"""Command-line text to values: durations, times, key=value pairs, payloads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from orchestrator_client.cli._values import (
    format_duration,
    load_payload,
    parse_duration,
    parse_key_value,
    parse_param_value,
    parse_time,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("2d", 172800.0),
        ("45", 45.0),
        ("0.25", 0.25),
        ("0s", 0.0),
        (" 10S ", 10.0),
        ("1h0m5s250ms", 3605.25),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "s", "5x", "-5s", "1h-30m", "inf", "nan", "1e3", "5 m", "m5", "1.2.3s"]
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (30, "30s"),
        (90, "1m30s"),
        (90.25, "1m30.25s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (86400 + 5, "1d5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_time_with_and_without_offset() -> None:
    assert parse_time("2026-05-01T14:30:00+02:00") == dt.datetime(2026, 5, 1, 12, 30, tzinfo=dt.UTC)
    assert parse_time("2026-05-01T14:30:00Z").tzinfo is not None
    local = parse_time("2026-05-01T14:30:00")
    assert local.tzinfo is not None  # taken as local time, never naive
    assert local.replace(tzinfo=None) == dt.datetime(2026, 5, 1, 14, 30)


def test_parse_time_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("tomorrow")


def test_parse_key_value() -> None:
    assert parse_key_value("team=billing") == ("team", "billing")
    assert parse_key_value("url=http://x/?a=b") == ("url", "http://x/?a=b")
    assert parse_key_value("empty=") == ("empty", "")
    for bad in ("novalue", "=x", ""):
        with pytest.raises(ValueError, match="key=value"):
            parse_key_value(bad)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("2.5", 2.5),
        ("true", True),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ('"3"', "3"),
        ("ada", "ada"),
        ("007", "007"),
        ("", ""),
    ],
)
def test_param_values_are_json_when_they_parse(text: str, value: object) -> None:
    assert parse_param_value(text) == value


def test_load_payload_inline_and_from_file(tmp_path: Path) -> None:
    assert load_payload('{"first": 1}') == {"first": 1}
    path = tmp_path / "payload.json"
    path.write_text('{"url": "http://example.test"}', encoding="utf-8")
    assert load_payload(f"@{path}") == {"url": "http://example.test"}


@pytest.mark.parametrize(
    ("text", "message"),
    [("[1]", "must be a JSON object"), ("{nope", "not valid JSON"), ("@/no/such/file", "cannot")],
)
def test_load_payload_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_payload(text)
