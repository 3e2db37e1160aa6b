"""``taskctl batch`` without a scheduler: cells, rows, columns, the results file, and how
answers and watch events settle the rows."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator.v1 import task_pb2, task_service_pb2
from orchestrator_client.cli._batch import (
    BatchRun,
    ItemError,
    NoDisplay,
    ProgressBar,
    default_batch_id,
    idempotency_key,
    item_error,
    row_refusal,
    write_results_file,
)
from orchestrator_client.cli._batch_csv import (
    OUTPUT_COLUMNS,
    REFERENCE_COLUMNS,
    InputError,
    InputRow,
    RowState,
    cell_text,
    parse_cell,
    read_rows,
    result_columns,
    summary_text,
    write_results,
)

# -- cells ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-2.5", -2.5),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("null", None),
        ('{"a": [1, "x"]}', {"a": [1, "x"]}),
        ("[1, 2]", [1, 2]),
        ('"007"', "007"),
        (" 42 ", 42),
        ("007", "007"),  # not JSON: a leading zero
        ("ada", "ada"),
        ("True", "True"),
        ("1,5", "1,5"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("1e999", "1e999"),
        ("12345678901234567890", "12345678901234567890"),  # a double would lose digits
        (str(2**53 - 1), 2**53 - 1),
        ("{not json", "{not json"),
    ],
)
def test_a_cell_is_json_when_it_parses_else_text(text: str, value: Any) -> None:
    parsed = parse_cell(text)
    assert parsed == value
    assert type(parsed) is type(value)


# -- rows ----------------------------------------------------------------------------------


def rows_of(text: str) -> list[InputRow]:
    return list(read_rows(io.StringIO(text, newline="")))


def test_rows_stream_with_payloads_of_the_other_columns() -> None:
    rows = rows_of(
        'task_id,task_type,n,name,flags,empty\na,sum2,1,ada,"{""x"": true}",\n b , foo ,,bob,,\n'
    )
    assert rows == [
        InputRow(2, "a", "sum2", {"n": 1, "name": "ada", "flags": {"x": True}}),
        InputRow(3, "b", "foo", {"name": "bob"}),  # ids trimmed, empty cells left out
    ]


def test_columns_may_come_in_any_order_and_the_header_is_trimmed() -> None:
    rows = rows_of("\ufeff n , task_type ,task_id,\n1,foo,a,\n")
    assert rows == [InputRow(2, "a", "foo", {"n": 1})]  # the unnamed column carries nothing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the input is empty"),
        ("task_id,n\n", "the header has no task_type column (it has: task_id, n)"),
        ("n\n", "no task_id and no task_type column"),
        ("task_id,task_type,n,n\n", "repeats column(s) n"),
    ],
)
def test_a_header_that_cannot_be_a_batch_is_refused_at_once(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_rows(io.StringIO(text))  # before any row is asked for


def test_bad_rows_come_with_their_problem_and_never_raise() -> None:
    rows = rows_of(
        "task_id,task_type,n\n"
        "1,foo,1\n"
        ",foo,2\n"
        "2,,3\n"
        ",,\n"
        "1,bar,4\n"
        "3,foo,5,extra,cells\n"
        "4,foo\n"  # a short row: the missing cells are empty
    )
    assert [(row.line, row.task_id, row.problem) for row in rows] == [
        (2, "1", ""),
        (3, "", "missing task_id"),
        (4, "2", "missing task_type"),
        (5, "", "missing task_id and task_type"),
        (6, "1", "duplicate task_id '1' (first on line 2)"),
        (7, "3", "line 7 has 5 cells, the header 3"),
        (8, "4", ""),
    ]
    assert all(row.payload == {} for row in rows[1:-1])


def test_an_unreadable_line_is_a_row_with_its_problem() -> None:
    limit = csv.field_size_limit()
    csv.field_size_limit(20)
    try:
        rows = rows_of("task_id,task_type,note\n1,foo," + "x" * 50 + "\n2,foo,ok\n")
    finally:
        csv.field_size_limit(limit)
    assert rows[0].problem.startswith("unreadable CSV line: field larger than field limit")
    assert (rows[0].task_id, rows[1].task_id, rows[1].problem) == ("", "2", "")


def test_rows_are_read_lazily() -> None:
    def lines() -> Iterator[str]:
        yield "task_id,task_type\n"
        for number in range(100_000):
            yield f"{number},foo\n"
        raise AssertionError("read past what was asked for")

    rows = read_rows(lines())
    first = [next(rows) for _ in range(3)]
    assert [row.task_id for row in first] == ["0", "1", "2"]


# -- results -------------------------------------------------------------------------------


def test_result_columns_are_the_sorted_union_with_clashes_renamed() -> None:
    rows = [
        RowState("1", "foo", result={"b": 1, "a": 2}),
        RowState("2", "foo"),
        RowState("3", "foo", result={"c": 3, "task_id": "x", "error_info": "y"}),
    ]
    assert result_columns(rows) == [
        ("a", "a"),
        ("b", "b"),
        ("c", "c"),
        ("result.error_info", "error_info"),
        ("result.task_id", "task_id"),
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain, text", "plain, text"),
        (3, "3"),
        (2.5, "2.5"),
        (True, "true"),
        (None, "null"),
        ({"b": 1, "a": [1, "é"]}, '{"a":[1,"é"],"b":1}'),
    ],
)
def test_cells_are_strings_as_they_are_else_json(value: Any, text: str) -> None:
    assert cell_text(value) == text


def test_the_results_file_keeps_input_order_and_the_reference_columns_first() -> None:
    assert (
        OUTPUT_COLUMNS[:4]
        == REFERENCE_COLUMNS
        == (
            "task_id",
            "task_type",
            "final_status",
            "error_info",
        )
    )
    rows = [
        RowState("2", "foo", "SUCCEEDED", "", "t2", result={"sum": 3, "note": "a,b"}),
        RowState("1", "nope", "UNSUPPORTED", "unsupported task_type 'nope'"),
        RowState("3", "foo", "FAILED", 'line one\nsaid "no"', "t3"),
        RowState("4", "foo", "RUNNING", "", "t4"),
    ]
    stream = io.StringIO()
    write_results(stream, rows)
    assert stream.getvalue() == (
        "task_id,task_type,final_status,error_info,scheduler_task_id,note,sum\n"
        '2,foo,SUCCEEDED,,t2,"a,b",3\n'
        "1,nope,UNSUPPORTED,unsupported task_type 'nope',,,\n"
        '3,foo,FAILED,"line one\nsaid ""no""",t3,,\n'
        "4,foo,RUNNING,,t4,,\n"
    )


def test_the_results_file_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    write_results_file(target, [RowState("1", "foo", "SUCCEEDED")])
    assert target.read_text().splitlines()[1] == "1,foo,SUCCEEDED,,"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.csv"]


def test_summary_text() -> None:
    assert summary_text(Counter()) == "0 rows"
    counts = Counter(["SUCCEEDED", "FAILED", "SUCCEEDED"])
    assert summary_text(counts) == "3 rows: 2 SUCCEEDED, 1 FAILED"
    assert summary_text(Counter(["INVALID"])) == "1 row: 1 INVALID"


# -- names and refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "batch_id"),
    [
        ("orders.csv", "orders"),
        ("my orders (2).csv", "my-orders--2-"),
        ("a:b.csv", "a-b"),
        ("__x.csv", "x"),
        ("...csv", "batch"),
        ("ünï.csv", "n-"),
    ],
)
def test_default_batch_id_is_the_file_stem_made_valid(name: str, batch_id: str) -> None:
    assert default_batch_id(Path("/data") / name) == batch_id


def test_idempotency_key() -> None:
    assert idempotency_key("orders", "a:1") == "batch:orders:a:1"


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        (
            "tasks[3].payload: 2000 bytes of JSON exceed the limit of 1000",
            ItemError(3, "payload", "2000 bytes of JSON exceed the limit of 1000"),
        ),
        (
            "tasks[0].type: unknown task type 'x'; known types: a, b",
            ItemError(0, "type", "unknown task type 'x'; known types: a, b"),
        ),
        (
            "tasks[12].backoff.multiplier: must be between 1 and 10",
            ItemError(12, "backoff", "must be between 1 and 10"),
        ),
        ("tasks: must hold 1 to 1000 tasks, got 0", None),
        ("scripted INVALID_ARGUMENT for BatchCreateTasks", None),
    ],
)
def test_item_errors_name_the_refused_row(details: str, expected: ItemError | None) -> None:
    assert item_error(details) == expected


def test_row_refusals() -> None:
    unknown = ItemError(0, "type", "unknown task type 'x'; known types: a")
    assert row_refusal(unknown, "x") == ("UNSUPPORTED", "unsupported task_type 'x'")
    payload = ItemError(1, "payload", "too big")
    assert row_refusal(payload, "foo") == ("INVALID", "payload: too big")
    key = ItemError(2, "idempotency_key", "must be at most 256 characters")
    status, error = row_refusal(key, "foo")
    assert status == "INVALID" and error.startswith("task_id: too long")


# -- settling rows from answers and events -------------------------------------------------


def task(
    task_id: str,
    state: task_pb2.TaskState.ValueType,
    revision: int,
    type: str = "foo",
    **fields: Any,
) -> task_pb2.Task:
    message = task_pb2.Task(id=task_id, type=type, state=state, revision=revision)
    for name, value in fields.items():
        if name == "result":
            message.result.update(value)
        else:
            setattr(message, name, value)
    return message


def upserted(message: task_pb2.Task) -> task_service_pb2.TaskEvent:
    return task_service_pb2.TaskEvent(
        type=task_service_pb2.TASK_EVENT_TYPE_UPSERTED, task=message, revision=message.revision
    )


def run_with_rows(*rows: tuple[str, str]) -> BatchRun:
    run = BatchRun(
        None,  # type: ignore[arg-type]  # no call is made in these tests
        "b",
        task_options={},
        chunk_size=500,
        display=NoDisplay(),
    )
    run.rows = [RowState(task_id, task_type) for task_id, task_type in rows]
    return run


async def test_an_older_revision_never_wins() -> None:
    run = run_with_rows(("1", "foo"))
    run._answered(0, task("t1", task_pb2.TASK_STATE_PENDING, 5))
    run._event(upserted(task("t1", task_pb2.TASK_STATE_FAILED, 8, error="boom")))
    run._event(upserted(task("t1", task_pb2.TASK_STATE_RUNNING, 7)))
    assert (run.rows[0].status, run.rows[0].error, run.unfinished) == ("FAILED", "boom", 0)


async def test_a_retried_task_counts_as_unfinished_again() -> None:
    run = run_with_rows(("1", "foo"))
    run._answered(0, task("t1", task_pb2.TASK_STATE_FAILED, 5, error="boom"))
    assert run.unfinished == 0
    run._event(upserted(task("t1", task_pb2.TASK_STATE_PENDING, 6)))
    assert (run.rows[0].status, run.unfinished) == ("PENDING", 1)


async def test_a_deleted_task_is_cancelled_unless_it_had_finished() -> None:
    run = run_with_rows(("1", "foo"), ("2", "foo"))
    run._answered(0, task("t1", task_pb2.TASK_STATE_RUNNING, 5))
    run._answered(1, task("t2", task_pb2.TASK_STATE_SUCCEEDED, 5))
    for task_id in ("t1", "t2"):
        run._event(
            task_service_pb2.TaskEvent(
                type=task_service_pb2.TASK_EVENT_TYPE_DELETED,
                task=task_pb2.Task(id=task_id, type="foo"),
                revision=6,
            )
        )
    assert [(row.status, row.error) for row in run.rows] == [
        ("CANCELLED", "task t1 was deleted before it finished"),
        ("SUCCEEDED", ""),
    ]
    assert run.unfinished == 0


async def test_a_key_answering_a_task_of_another_type_is_invalid() -> None:
    run = run_with_rows(("1", "foo"))
    run._answered(0, task("t1", task_pb2.TASK_STATE_SUCCEEDED, 5, type="bar"))
    row = run.rows[0]
    assert (row.status, row.scheduler_id, run.unfinished) == ("INVALID", "", 0)
    assert "submitted before as a 'bar' task (t1)" in row.error


async def test_events_of_tasks_of_no_row_are_ignored() -> None:
    run = run_with_rows(("1", "foo"))
    run._answered(0, task("t1", task_pb2.TASK_STATE_PENDING, 5))
    run._event(upserted(task("t9", task_pb2.TASK_STATE_SUCCEEDED, 6)))
    assert (run.rows[0].status, run.unfinished) == ("PENDING", 1)


async def test_a_finished_batch_opens_no_watch() -> None:
    run = run_with_rows(("1", "foo"))
    run._since = 5
    run._answered(0, task("t1", task_pb2.TASK_STATE_SUCCEEDED, 5, result={"x": 1}))
    assert await run.wait(deadline=None) == (False, None)  # the stub client is never called
    assert run.rows[0].result == {"x": 1}


def test_the_progress_bar_draws_on_a_terminal() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    bar = ProgressBar(console)
    bar.update(submitted=10, finished=4, submitting=True)
    bar.update(submitted=10, finished=10, submitting=False)
    bar.close()
    assert "10/10" in console.file.getvalue()  # type: ignore[attr-defined]
