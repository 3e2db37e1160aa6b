"""Built-in handlers called directly: validation, printing, results (no sockets)."""

from __future__ import annotations

import csv
import json
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from worker_service import HandlerSettings, PermanentError, TaskContext, TaskFailed, TaskInfo
from worker_service.builtin import arithmetic, basic, cpu, http, mail, reports


def make_ctx(tmp_path: Path | None = None, task_id: str = "T1", **settings: Any) -> TaskContext:
    if tmp_path is not None:
        settings.setdefault("outbox_dir", tmp_path / "outbox")
        settings.setdefault("reports_dir", tmp_path / "reports")
    return TaskContext(
        task_id=task_id,
        type="test",
        attempt=1,
        max_attempts=3,
        lease_id="L1",
        worker_id="w",
        settings=HandlerSettings(**settings),
    )


async def test_sum2_and_mult3(capsys: pytest.CaptureFixture[str]) -> None:
    assert await arithmetic.sum2({"first": 1, "second": 2.5}, make_ctx()) == {"sum": 3.5}
    assert await arithmetic.mult3({"first": 2, "second": 3, "third": -4}, make_ctx()) == {
        "product": -24
    }
    assert capsys.readouterr().out == "sum2: 1 + 2.5 = 3.5\nmult3: 2 * 3 * -4 = -24\n"


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        ({"second": 2}, "payload field 'first' is required (a number)"),
        ({"first": 1, "second": None}, "payload field 'second' is required"),
        ({"first": "1", "second": 2}, "payload field 'first' must be a number, got '1'"),
        ({"first": True, "second": 2}, "payload field 'first' must be a number, got True"),
        ({"first": 1, "second": [2]}, "payload field 'second' must be a number"),
    ],
)
async def test_sum2_validation_names_the_field(payload: dict[str, Any], complaint: str) -> None:
    with pytest.raises(PermanentError) as caught:
        await arithmetic.sum2(payload, make_ctx())
    assert str(caught.value).startswith(complaint)


async def test_mult3_validation_names_the_field() -> None:
    with pytest.raises(PermanentError, match="'third' is required"):
        await arithmetic.mult3({"first": 1, "second": 2}, make_ctx())
    with pytest.raises(PermanentError, match="'second' must be a number"):
        await arithmetic.mult3({"first": 1, "second": {}, "third": 3}, make_ctx())


async def test_surprise_and_baz(capsys: pytest.CaptureFixture[str]) -> None:
    surprise = await arithmetic.surprise({}, make_ctx())
    assert surprise["surprise"] in arithmetic.SURPRISES
    assert 0 <= surprise["number"] < 100
    numbers = [(await basic.baz({}, make_ctx()))["number"] for _ in range(50)]
    assert all(0 <= n <= 343 for n in numbers)
    printed = capsys.readouterr().out.splitlines()
    assert printed[1:] == [f"Baz {n}" for n in numbers]


async def test_foo_prints_its_task_id(capsys: pytest.CaptureFixture[str]) -> None:
    result = await basic.foo({}, make_ctx(task_id="abc", foo_seconds=0))
    assert result == {"message": "Foo abc"}
    assert capsys.readouterr().out == "Foo abc\n"
    with pytest.raises(PermanentError, match="'seconds' must be between 0"):
        await basic.foo({"seconds": -1}, make_ctx())


async def test_http_types_without_a_url_fail_for_good() -> None:
    with pytest.raises(PermanentError, match=r'no url: give the payload a "url".*--bar-url'):
        await http.bar({}, make_ctx())
    with pytest.raises(PermanentError, match="--fetch-url"):
        await http.process_data({}, make_ctx())


def info(attempt: int = 1) -> TaskInfo:
    return TaskInfo(task_id="C1", type="cpu_process", attempt=attempt, max_attempts=3, lease_id="L")


def test_cpu_process_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    first = cpu.cpu_process({"iterations": 10}, info())
    assert first["iterations"] == 10
    assert first == cpu.cpu_process({"iterations": 10}, info())  # deterministic
    assert first != cpu.cpu_process({"iterations": 10, "seed": "x"}, info())
    assert capsys.readouterr().out.startswith(
        f"CPU task C1: 10 sha256 rounds -> {first['digest'][:16]}"
    )


def test_cpu_process_fails_on_request() -> None:
    with pytest.raises(TaskFailed, match=r"fails on purpose, to test retries \(attempt 1 of 3\)"):
        cpu.cpu_process({"iterations": 1, "fail": True}, info())
    with pytest.raises(TaskFailed):
        cpu.cpu_process({"iterations": 1, "fail_attempts": 2}, info(attempt=2))
    assert (
        cpu.cpu_process({"iterations": 1, "fail_attempts": 2}, info(attempt=3))["iterations"] == 1
    )
    with pytest.raises(PermanentError, match="'iterations' must be between 0 and 20000000"):
        cpu.cpu_process({"iterations": 10**9}, info())
    with pytest.raises(PermanentError, match="'fail' must be true or false"):
        cpu.cpu_process({"fail": "yes"}, info())


def test_report_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payload = {
        "title": "Sales",
        "rows": [{"region": "north", "amount": 10}, {"region": "south", "amount": 2.5, "x": None}],
    }
    result = reports.generate_report(payload, make_ctx(tmp_path, task_id="r/1"))
    path = Path(result["path"])
    assert path == tmp_path / "reports" / "r_1.csv"
    assert result["rows"] == 2
    assert result["columns"] == {
        "region": {"count": 2},
        "amount": {"count": 2, "min": 2.5, "max": 10, "sum": 12.5, "mean": 6.25},
        "x": {"count": 0},
    }
    with path.open() as stream:
        assert list(csv.DictReader(stream)) == [
            {"region": "north", "amount": "10", "x": ""},
            {"region": "south", "amount": "2.5", "x": ""},
        ]
    assert capsys.readouterr().out == f"Report 'Sales': 2 rows -> {path}\n"


def test_report_json_and_validation(tmp_path: Path) -> None:
    result = reports.generate_report({"rows": [], "format": "json"}, make_ctx(tmp_path))
    document = json.loads(Path(result["path"]).read_text())
    assert document["rows"] == [] and document["title"] == "report"
    with pytest.raises(PermanentError, match="'rows' is required"):
        reports.generate_report({}, make_ctx(tmp_path))
    with pytest.raises(PermanentError, match=r"'rows\[1\]' must be an object"):
        reports.generate_report({"rows": [{}, 3]}, make_ctx(tmp_path))
    with pytest.raises(PermanentError, match="'format' must be one of"):
        reports.generate_report({"rows": [], "format": "pdf"}, make_ctx(tmp_path))


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("a@example.com", ["a@example.com"]),
        ("a@example.com, b@localhost", ["a@example.com", "b@localhost"]),
        (["x.y+z@mail.example.org"], ["x.y+z@mail.example.org"]),
    ],
)
def test_recipients(to: Any, expected: list[str]) -> None:
    assert mail.recipients({"to": to}) == expected


@pytest.mark.parametrize(
    ("to", "complaint"),
    [
        (None, "'to' is required"),
        ("", "'to' is required"),
        ("nobody", "'nobody' is not an email address"),
        ("a@b@c", "is not an email address"),
        ("Name <a@b.c>", "is not an email address"),
        (3, "must be an address or a list"),
    ],
)
def test_bad_recipients(to: Any, complaint: str) -> None:
    with pytest.raises(PermanentError, match=complaint):
        mail.recipients({"to": to})


def test_send_email_to_the_outbox(tmp_path: Path) -> None:
    payload = {"to": "ops@example.com", "subject": "Hello ✓", "body": "line one\nline two\n"}
    result = mail.send_email(payload, make_ctx(tmp_path, task_id="M1"))
    assert result == {
        "delivered_via": "outbox",
        "path": str(tmp_path / "outbox" / "M1.eml"),
        "to": ["ops@example.com"],
    }
    parsed = message_from_bytes(Path(result["path"]).read_bytes())
    assert parsed["To"] == "ops@example.com"
    assert parsed["X-Orchestrator-Task-Id"] == "M1"


def test_a_header_injection_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="cannot build the message"):
        mail.send_email({"to": "a@b.c", "subject": "hi\nBcc: x@y.z"}, make_ctx(tmp_path))
