"""The pure half of ``taskctl batch``: the input CSV in, the results CSV out.

Nothing here talks to a scheduler, so every rule (what a cell becomes, which rows are
INVALID and why, which columns the results have and in which order) is unit-tested on
strings. ``_batch`` does the calls.

Input: a header line, then one task per row. ``task_id`` and ``task_type`` are required
columns; every other column is a payload field. A cell becomes JSON when it parses as JSON
(``3``, ``2.5``, ``true``, ``{"a": 1}``, ``"quoted"``), else it stays text; an empty cell
leaves its field out. Rows are read one at a time, so a file of any length streams.

Output, in input order: ``task_id, task_type, final_status, error_info`` (the reference
columns, always first), ``scheduler_task_id``, then one column per top-level key of any
task's result, sorted by name.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..convert import dumps_json

REQUIRED_COLUMNS = ("task_id", "task_type")
#: The columns of the CSV batch reference, first and in this order.
REFERENCE_COLUMNS = ("task_id", "task_type", "final_status", "error_info")
#: After them: the scheduler's id of the row's task (empty for rows never submitted).
OUTPUT_COLUMNS = (*REFERENCE_COLUMNS, "scheduler_task_id")
#: A result key that is also an output column is written as ``result.<key>``.
RESULT_PREFIX = "result."

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
#: The scheduler knows no such task type; the row was not submitted.
UNSUPPORTED = "UNSUPPORTED"
#: The row is malformed (or the scheduler refused it); it was not submitted.
INVALID = "INVALID"
#: Statuses a row keeps; the others (SCHEDULED, PENDING, RUNNING) are written only when the
#: wait timed out.
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELLED, UNSUPPORTED, INVALID})

#: Integers beyond this lose digits as a protobuf Struct number (a double): keep them as text.
_EXACT_INTEGERS = 2**53
#: DictReader puts the cells of a row longer than the header under this key.
_EXTRA = object()


class InputError(ValueError):
    """The file cannot be read as a batch at all (no header, no task_id column, …)."""


def parse_cell(text: str) -> Any:
    """A payload value: JSON when ``text`` parses as JSON, else ``text`` itself.

    Non-finite numbers (``NaN``, ``Infinity``, ``1e999``) and integers a double cannot hold
    exactly (an account number of 20 digits) stay text, so no value changes on the way.
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return text
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) >= _EXACT_INTEGERS:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def unsupported_error(task_type: str) -> str:
    return f"unsupported task_type '{task_type}'"


@dataclass(slots=True)
class InputRow:
    """One data row of the input: a task to submit, or why it cannot be."""

    #: The line the row ends on (the header is line 1).
    line: int
    task_id: str
    task_type: str
    payload: dict[str, Any]
    #: Why the row is INVALID; empty when it is well-formed.
    problem: str = ""


def read_rows(lines: Iterable[str]) -> Iterator[InputRow]:
    """The rows of ``lines`` (an open file), one at a time, each well-formed or carrying its
    ``problem``.

    The header is read at once: ``InputError`` when it is missing, repeats a column or lacks
    a required one. After that no row raises: a bad row comes with its problem (missing
    task_id or task_type, a task_id seen on an earlier line, more cells than the header, a
    line the csv module cannot read).
    """
    reader = csv.DictReader(lines, restkey=_EXTRA)  # type: ignore[call-overload]
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise InputError(f"cannot read the header: {exc}") from None
    if not header:
        raise InputError("the input is empty: expected a header line naming task_id and task_type")
    # A byte order mark is no part of the first name (a spreadsheet's "UTF-8 with BOM").
    names = [name.lstrip("\ufeff").strip() for name in header]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise InputError(f"the header repeats column(s) {', '.join(repeated)}")
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise InputError(
            f"the header has no {' and no '.join(missing)} column (it has: {', '.join(names)})"
        )
    reader.fieldnames = names
    return _rows(reader, len(names))


def _rows(reader: csv.DictReader[Any], width: int) -> Iterator[InputRow]:
    # Columns without a name (a trailing comma in the header) carry nothing.
    fields = [name for name in reader.fieldnames or () if name and name not in REQUIRED_COLUMNS]
    first_line: dict[str, int] = {}
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield InputRow(reader.line_num, "", "", {}, problem=f"unreadable CSV line: {exc}")
            continue
        yield _row(cells, fields, width, reader.line_num, first_line)


def _row(
    cells: Mapping[Any, Any],
    fields: Sequence[str],
    width: int,
    line: int,
    first_line: dict[str, int],
) -> InputRow:
    task_id = (cells.get("task_id") or "").strip()
    task_type = (cells.get("task_type") or "").strip()
    problems = []
    extra = cells.get(_EXTRA)
    if extra:
        problems.append(f"line {line} has {width + len(extra)} cells, the header {width}")
    missing = [
        name for name, value in (("task_id", task_id), ("task_type", task_type)) if not value
    ]
    if missing:
        problems.append(f"missing {' and '.join(missing)}")
    if task_id:
        first = first_line.setdefault(task_id, line)
        if first != line:
            problems.append(f"duplicate task_id '{task_id}' (first on line {first})")
    if problems:
        return InputRow(line, task_id, task_type, {}, problem="; ".join(problems))
    payload = {name: parse_cell(cells[name]) for name in fields if cells.get(name)}
    return InputRow(line, task_id, task_type, payload)


@dataclass(slots=True)
class RowState:
    """What is kept of a row for the whole run: a few strings and the task's result."""

    task_id: str
    task_type: str
    #: The final status, or the task's current state while it runs; empty until known.
    status: str = ""
    error: str = ""
    scheduler_id: str = ""
    #: The revision of the task as last seen, so that an older answer never wins.
    revision: int = 0
    result: dict[str, Any] | None = field(default=None)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


def result_columns(rows: Iterable[RowState]) -> list[tuple[str, str]]:
    """``(column, result key)`` pairs: the union of the results' top-level keys, sorted.

    A key that is also an output column (a result with its own ``task_id``) is written
    under ``result.<key>`` rather than overwrite the row's own column.
    """
    keys: set[str] = set()
    for row in rows:
        if row.result:
            keys.update(row.result)
    return [(RESULT_PREFIX + key if key in OUTPUT_COLUMNS else key, key) for key in sorted(keys)]


def cell_text(value: Any) -> str:
    """A result value as a cell: strings as they are, anything else as compact JSON
    (``3``, ``2.5``, ``true``, ``null``, ``{"a":1}``)."""
    return value if isinstance(value, str) else dumps_json(value)


def write_results(stream: TextIO, rows: Sequence[RowState]) -> None:
    """The results CSV: the output columns, then the result columns, one line per row."""
    columns = result_columns(rows)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([*OUTPUT_COLUMNS, *(name for name, _ in columns)])
    for row in rows:
        result = row.result or {}
        writer.writerow(
            [
                row.task_id,
                row.task_type,
                row.status,
                row.error,
                row.scheduler_id,
                *(cell_text(result[key]) if key in result else "" for _, key in columns),
            ]
        )


def status_counts(rows: Iterable[RowState]) -> Counter[str]:
    return Counter(row.status for row in rows)


def summary_text(counts: Counter[str]) -> str:
    """``10 rows: 7 SUCCEEDED, 1 FAILED, 2 UNSUPPORTED``: the most common status first."""
    total = sum(counts.values())
    parts = ", ".join(f"{count} {status}" for status, count in counts.most_common())
    return f"{total} row{'' if total == 1 else 's'}" + (f": {parts}" if parts else "")
