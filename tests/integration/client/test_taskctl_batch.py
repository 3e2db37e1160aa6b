"""``taskctl batch`` against the scripted server: type check, refusals, waiting, resuming."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from orchestrator.v1 import task_pb2
from orchestrator_client.cli import ExitCode
from orchestrator_client.convert import dict_from_struct
from orchestrator_client.protocol import CLIENT_METADATA_KEY

if TYPE_CHECKING:
    from conftest import FakeScheduler, Outcome, Taskctl

# Lines 2..11: a success, an unknown type, two more successes, a payload the scheduler
# refuses, a task that fails, a row without task_id, a duplicate task_id, a success with a
# nested payload, a last success.
INPUT = """\
task_id,task_type,n,note,fail,refuse_me
1,foo,1,first,,
2,nope,2,,,
3,foo,3,,,
7,foo,8,,,
8,foo,9,,,1
4,bar,4,,true,
,foo,5,,,
1,foo,6,,,
5,bar,"{""deep"": [1, 2]}","a, quoted note",,
6,foo,7,,,
"""

OUTPUT_HEADER = [
    "task_id",
    "task_type",
    "final_status",
    "error_info",
    "scheduler_task_id",
    "double",
    "echo",
    "result.task_id",
]


def worker(task: task_pb2.Task) -> Outcome:
    """Fails tasks whose payload says so; the others answer their payload and n doubled."""
    payload = dict_from_struct(task.payload)
    if payload.get("fail"):
        return task_pb2.TASK_STATE_FAILED, None, "boom: asked to fail"
    n = payload.get("n")
    double = n * 2 if isinstance(n, int) else None
    return task_pb2.TASK_STATE_SUCCEEDED, {"double": double, "echo": payload, "task_id": "x"}, ""


@pytest.fixture
def batch_scheduler(scheduler: FakeScheduler) -> FakeScheduler:
    scheduler.script.strict_types = True  # foo and bar are known, nothing else
    scheduler.script.worker = worker
    return scheduler


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.reader(stream))


def write_input(tmp_path: Path, text: str, name: str = "orders.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def test_batch_settles_every_row_and_a_rerun_creates_nothing(
    taskctl: Taskctl, batch_scheduler: FakeScheduler, tmp_path: Path
) -> None:
    script = batch_scheduler.script
    source = write_input(tmp_path, INPUT)
    target = tmp_path / "results.csv"
    argv = ("--client-id", "ops", "batch", str(source), "-o", str(target), "--chunk-size", "3")

    result = await taskctl(*argv, "--priority", "7")
    assert result.code == ExitCode.TASK_UNSUCCESSFUL, result.err
    rows = read_csv(target)
    assert rows[0] == OUTPUT_HEADER
    assert [row[:4] for row in rows[1:]] == [
        ["1", "foo", "SUCCEEDED", ""],
        ["2", "nope", "UNSUPPORTED", "unsupported task_type 'nope'"],
        ["3", "foo", "SUCCEEDED", ""],
        ["7", "foo", "SUCCEEDED", ""],
        ["8", "foo", "INVALID", "payload: field 'refuse_me' is refused"],
        ["4", "bar", "FAILED", "boom: asked to fail"],
        ["", "foo", "INVALID", "missing task_id"],
        ["1", "foo", "INVALID", "duplicate task_id '1' (first on line 2)"],
        ["5", "bar", "SUCCEEDED", ""],
        ["6", "foo", "SUCCEEDED", ""],
    ]
    # Results: the union of keys, sorted; strings as they are, the rest as JSON; a key that
    # is an output column's name goes under result.<key>.
    assert rows[1][5:] == ["2", '{"n":1,"note":"first"}', "x"]
    assert rows[9][5:] == ["null", '{"n":{"deep":[1,2]},"note":"a, quoted note"}', "x"]
    assert rows[6][4:] == [rows[6][4], "", "", ""]  # FAILED: no result
    # scheduler_task_id: the task the row's key made; empty for rows never submitted.
    assert rows[1][4] == script.keys[("ops", "batch:orders:1")]
    assert [row[4] for row in rows[1:]].count("") == 4

    # What was sent: the type check first, chunks of at most 3, keys, label, options.
    assert script.calls[0].method == "ListTaskTypes"
    batches = script.calls_of("BatchCreateTasks")
    # [1, 3, 7], [8, 4, 5] refused for 8, [4, 5] again, [6].
    assert [[t.idempotency_key[13:] for t in c.request.tasks] for c in batches] == [
        ["1", "3", "7"],
        ["8", "4", "5"],
        ["4", "5"],
        ["6"],
    ]
    sent = [item for call in batches for item in call.request.tasks]
    assert all(item.idempotency_key.startswith("batch:orders:") for item in sent)
    assert all(dict(item.labels) == {"batch": "orders"} for item in sent)
    assert all(item.priority == 7 for item in sent)
    assert all(call.metadata[CLIENT_METADATA_KEY] == "ops" for call in batches)
    watch = script.calls_of("WatchTasks")[0].request
    assert dict(watch.labels) == {"batch": "orders"} and watch.since_revision > 0
    assert watch.view == task_pb2.TASK_VIEW_FULL
    assert (
        "batch orders: 10 rows: 5 SUCCEEDED, 3 INVALID, 1 UNSUPPORTED, 1 FAILED; results in "
        in result.err
    )
    summary = result.json()
    assert summary["statuses"] == {"FAILED": 1, "INVALID": 3, "SUCCEEDED": 5, "UNSUPPORTED": 1}
    assert summary["rows"] == 10

    # The same command again: every key answers its first task; nothing new, same file.
    created = len(script.tasks)
    first_run = target.read_text()
    again = await taskctl(*argv)
    assert again.code == ExitCode.TASK_UNSUCCESSFUL, again.err
    assert len(script.tasks) == created
    assert target.read_text() == first_run


async def test_every_row_succeeding_is_exit_0(
    taskctl: Taskctl, batch_scheduler: FakeScheduler, tmp_path: Path
) -> None:
    source = write_input(tmp_path, "task_id,task_type,n\na,foo,1\nb,bar,2\n", "my jobs.csv")
    target = tmp_path / "out.csv"
    result = await taskctl("--no-json", "batch", str(source), "-o", str(target))
    assert result.code == ExitCode.OK, result.err
    assert result.out == ""
    assert "batch my-jobs: 2 rows: 2 SUCCEEDED; results in" in result.err
    assert [row[2] for row in read_csv(target)[1:]] == ["SUCCEEDED", "SUCCEEDED"]
    labels = {dict(t.labels)["batch"] for t in batch_scheduler.script.tasks.values()}
    assert labels == {"my-jobs"}


async def test_the_batch_id_scopes_the_keys(
    taskctl: Taskctl, batch_scheduler: FakeScheduler, tmp_path: Path
) -> None:
    # Two files with the same task ids do not answer each other's tasks.
    first = write_input(tmp_path, "task_id,task_type\n1,foo\n", "a.csv")
    second = write_input(tmp_path, "task_id,task_type\n1,foo\n", "b.csv")
    for source in (first, second):
        result = await taskctl("batch", str(source), "-o", str(tmp_path / f"{source.stem}.out"))
        assert result.code == ExitCode.OK, result.err
    assert len(batch_scheduler.script.tasks) == 2
    pinned = await taskctl("batch", str(second), "-o", str(tmp_path / "c.out"), "--batch-id", "a")
    assert pinned.code == ExitCode.OK
    assert len(batch_scheduler.script.tasks) == 2


async def test_an_interrupted_submit_resumes_without_duplicates(
    taskctl: Taskctl, batch_scheduler: FakeScheduler, tmp_path: Path
) -> None:
    rows = "".join(f"{i},foo,{i}\n" for i in range(7))
    source = write_input(tmp_path, "task_id,task_type,n\n" + rows)
    target = tmp_path / "results.csv"
    script = batch_scheduler.script
    # The second chunk of the first run fails: the run stops there, the first chunk made.
    calls = 0
    enter = script.enter

    async def failing_second_chunk(method: str, request: Any, context: Any) -> None:
        nonlocal calls
        if method == "BatchCreateTasks":
            calls += 1
            if calls == 2:
                script.failures[method].append(grpc.StatusCode.INTERNAL)
        await enter(method, request, context)

    script.enter = failing_second_chunk
    interrupted = await taskctl("batch", str(source), "-o", str(target), "--chunk-size", "3")
    assert interrupted.code == ExitCode.RPC_ERROR
    assert "INTERNAL" in interrupted.err
    assert not target.exists()  # never half-written
    assert len(script.tasks) == 3

    resumed = await taskctl("batch", str(source), "-o", str(target), "--chunk-size", "3")
    assert resumed.code == ExitCode.OK, resumed.err
    assert len(script.tasks) == 7
    assert [row[0] for row in read_csv(target)[1:]] == [str(i) for i in range(7)]


async def test_timeout_all_writes_what_is_known_and_a_rerun_finishes(
    taskctl: Taskctl, batch_scheduler: FakeScheduler, tmp_path: Path
) -> None:
    script = batch_scheduler.script

    def stuck_on_b(task: task_pb2.Task) -> Outcome | None:
        return None if dict(task.payload).get("stuck") else worker(task)

    script.worker = stuck_on_b
    source = write_input(tmp_path, "task_id,task_type,stuck,n\na,foo,,1\nb,foo,true,2\n")
    target = tmp_path / "results.csv"
    result = await taskctl("batch", str(source), "-o", str(target), "--timeout-all", "300ms")
    assert result.code == ExitCode.RPC_ERROR
    assert "DEADLINE_EXCEEDED: 1 task(s) of batch orders did not finish within 300ms" in (
        result.err
    )
    assert [row[:3] for row in read_csv(target)[1:]] == [
        ["a", "foo", "SUCCEEDED"],
        ["b", "foo", "RUNNING"],
    ]
    # The final pass on the label ran after the watch gave up.
    assert script.calls_of("ListTasks")[-1].request.labels["batch"] == "orders"

    stuck = next(t for t in script.tasks.values() if dict(t.payload).get("stuck"))
    script.change(stuck, state=task_pb2.TASK_STATE_SUCCEEDED, result={"double": 4})
    again = await taskctl("batch", str(source), "-o", str(target))
    assert again.code == ExitCode.OK, again.err
    assert len(script.tasks) == 2
    assert [row[2] for row in read_csv(target)[1:]] == ["SUCCEEDED", "SUCCEEDED"]


async def test_a_broken_watch_is_reopened(
    taskctl: Taskctl, batch_scheduler: FakeScheduler, tmp_path: Path
) -> None:
    batch_scheduler.script.failures["WatchTasks"] = [grpc.StatusCode.UNAVAILABLE]
    source = write_input(tmp_path, "task_id,task_type\na,foo\nb,foo\n")
    target = tmp_path / "results.csv"
    result = await taskctl("batch", str(source), "-o", str(target))
    assert result.code == ExitCode.OK, result.err
    watches = batch_scheduler.script.calls_of("WatchTasks")
    assert len(watches) == 2
    assert watches[1].request.since_revision >= watches[0].request.since_revision


async def test_a_refusal_of_the_whole_batch_stops_the_run(
    taskctl: Taskctl, batch_scheduler: FakeScheduler, tmp_path: Path
) -> None:
    # INVALID_ARGUMENT that names no row (here: scripted) is every row's problem.
    batch_scheduler.script.failures["BatchCreateTasks"] = [grpc.StatusCode.INVALID_ARGUMENT]
    source = write_input(tmp_path, "task_id,task_type\na,foo\n")
    target = tmp_path / "results.csv"
    result = await taskctl("batch", str(source), "-o", str(target))
    assert result.code == ExitCode.RPC_ERROR
    assert result.err.startswith("error: INVALID_ARGUMENT: ")
    assert not target.exists()


async def test_nothing_to_submit(
    taskctl: Taskctl, batch_scheduler: FakeScheduler, tmp_path: Path
) -> None:
    empty = write_input(tmp_path, "task_id,task_type,n\n", "empty.csv")
    result = await taskctl("batch", str(empty), "-o", str(tmp_path / "e.out"))
    assert result.code == ExitCode.OK, result.err
    assert read_csv(tmp_path / "e.out") == [OUTPUT_HEADER[:5]]

    unsupported = write_input(tmp_path, "task_id,task_type\n1,nope\n", "u.csv")
    result = await taskctl("batch", str(unsupported), "-o", str(tmp_path / "u.out"))
    assert result.code == ExitCode.TASK_UNSUCCESSFUL
    assert read_csv(tmp_path / "u.out")[1] == [
        "1",
        "nope",
        "UNSUPPORTED",
        "unsupported task_type 'nope'",
        "",
    ]
    assert batch_scheduler.script.calls_of("BatchCreateTasks") == []


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        (None, [], "no such input file"),
        ("", [], "the input is empty"),
        ("id,task_type\n1,foo\n", [], "the header has no task_id column"),
        ("task_id,task_type,a,a\n", [], "repeats column(s) a"),
        ("task_id,task_type\n", ["--batch-id", "a:b"], "invalid --batch-id 'a:b'"),
        ("task_id,task_type\n", ["--chunk-size", "501"], "must be at most 500"),
    ],
)
async def test_usage_errors_send_nothing(
    taskctl: Taskctl,
    batch_scheduler: FakeScheduler,
    tmp_path: Path,
    text: str | None,
    extra: list[str],
    message: str,
) -> None:
    source = tmp_path / "in.csv"
    if text is not None:
        source.write_text(text)
    result = await taskctl("batch", str(source), "-o", str(tmp_path / "out.csv"), *extra)
    assert result.code == ExitCode.USAGE
    assert message in result.err
    assert batch_scheduler.script.calls == []


async def test_an_input_that_is_not_utf8_is_a_usage_error(
    taskctl: Taskctl, batch_scheduler: FakeScheduler, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(b"task_id,task_type,name\n1,foo,\xff\n")
    result = await taskctl("batch", str(source), "-o", str(tmp_path / "out.csv"))
    assert result.code == ExitCode.USAGE
    assert "is not UTF-8 text" in result.err


async def test_json_summary_names_the_files(
    taskctl: Taskctl, batch_scheduler: FakeScheduler, tmp_path: Path
) -> None:
    source = write_input(tmp_path, "\ufefftask_id,task_type\n1,foo\n")
    target = tmp_path / "results.csv"
    result = await taskctl("batch", str(source), "-o", str(target))
    assert result.code == ExitCode.OK, result.err
    assert json.loads(result.out) == {
        "batch_id": "orders",
        "input": str(source),
        "output": str(target),
        "rows": 1,
        "statuses": {"SUCCEEDED": 1},
    }
