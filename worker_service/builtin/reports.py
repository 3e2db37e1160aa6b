"""``generate_report`` (AsyncTaskProcessor): rows in, a report file and its summary out.

Payload: ``{"title": str?, "rows": [{...}, ...], "format": "csv" | "json"?}``. The file goes
to ``--reports-dir`` named after the task id (a retry overwrites it). The result carries the
path, the row count and, per column, how many rows have it and min/max/sum/mean of the
numeric ones. A plain function: it writes a file, so it runs in a thread.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..context import TaskContext
from ..errors import PermanentError
from ..registry import handler
from ._payload import file_name, optional_str, write_atomically

FORMATS = ("csv", "json")


def rows_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    rows = payload.get("rows")
    if not isinstance(rows, list):
        raise PermanentError("payload field 'rows' is required (a list of objects)")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise PermanentError(f"payload field 'rows[{index}]' must be an object, got {row!r}")
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per column (in first-seen order): ``count`` of rows that have a value and, when every
    value is a number, ``min``, ``max``, ``sum``, ``mean``."""
    columns: dict[str, list[Any]] = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, [])
            if value is not None:
                columns[key].append(value)
    summary: dict[str, dict[str, Any]] = {}
    for name, values in columns.items():
        entry: dict[str, Any] = {"count": len(values)}
        if values and all(_is_number(v) for v in values):
            total = math.fsum(values) if any(isinstance(v, float) for v in values) else sum(values)
            entry.update(min=min(values), max=max(values), sum=total, mean=total / len(values))
        summary[name] = entry
    return summary


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def render_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
        )
    return out.getvalue().encode()


@handler("generate_report")
def generate_report(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    title = optional_str(payload, "title", "report")
    fmt = optional_str(payload, "format", "csv")
    if fmt not in FORMATS:
        raise PermanentError(f"payload field 'format' must be one of {list(FORMATS)}, got {fmt!r}")
    rows = rows_of(payload)
    summary = summarize(rows)
    if fmt == "csv":
        data = render_csv(rows, list(summary))
    else:
        document = {
            "title": title,
            "task_id": ctx.task_id,
            "generated_at": datetime.now(UTC).isoformat(),
            "rows": rows,
            "columns": summary,
        }
        data = json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"
    path = ctx.settings.reports_dir / file_name(ctx.task_id, f".{fmt}")
    write_atomically(path, data)
    print(f"Report {title!r}: {len(rows)} rows -> {path}", flush=True)
    return {"path": str(path), "title": title, "format": fmt, "rows": len(rows), "columns": summary}
