"""taskctl's command line: global options, environment, each command's arguments.

Nothing here opens a connection: usage errors end before a client is made.
"""

from __future__ import annotations

import argparse

import pytest

from orchestrator.v1 import task_pb2
from orchestrator_client.cli import ExitCode, main
from orchestrator_client.cli._parser import build_parser
from orchestrator_client.protocol import DEFAULT_SCHEDULER_ADDRESS


def parse(*argv: str, environ: dict[str, str] | None = None) -> argparse.Namespace:
    return build_parser(environ or {}).parse_args(list(argv))


def test_global_defaults() -> None:
    args = parse("stats")
    assert args.scheduler == DEFAULT_SCHEDULER_ADDRESS
    assert args.client_id == ""
    assert args.rpc_timeout == 10.0
    assert args.json is None  # decided later from the terminal
    assert args.command == "stats"


def test_global_options_from_the_environment() -> None:
    environ = {
        "ORCHESTRATOR_SCHEDULER": "sched:1",
        "ORCHESTRATOR_CLIENT_ID": "ops",
        "ORCHESTRATOR_TIMEOUT": "30s",
        "ORCHESTRATOR_JSON": "false",
    }
    args = parse("stats", environ=environ)
    assert (args.scheduler, args.client_id, args.rpc_timeout, args.json) == (
        "sched:1",
        "ops",
        30.0,
        False,
    )
    assert parse("--scheduler", "cli:2", "stats", environ=environ).scheduler == "cli:2"


def test_command_options_read_no_environment() -> None:
    # A stray ORCHESTRATOR_GROUP must not silently put every created task in a group.
    args = parse("create", "foo", environ={"ORCHESTRATOR_GROUP": "g", "ORCHESTRATOR_WAIT": "1"})
    assert args.group == ""
    assert args.wait is False


def test_global_and_task_timeouts_are_separate() -> None:
    args = parse("--timeout", "5s", "create", "foo", "--timeout", "2m")
    assert args.rpc_timeout == 5.0
    assert args.task_timeout == 120.0


def test_json_switches() -> None:
    assert parse("--json", "stats").json is True
    assert parse("--no-json", "stats").json is False


def test_create_options() -> None:
    args = parse(
        "create",
        "sum2",
        "--payload",
        '{"first": 1}',
        "-p",
        "second=2",
        "--param",
        "name=ada",
        "--in",
        "1h30m",
        "--priority",
        "7",
        "--max-attempts",
        "5",
        "--backoff-initial",
        "500ms",
        "--backoff-multiplier",
        "3",
        "--backoff-max",
        "1m",
        "--backoff-jitter",
        "0",
        "--group",
        "g",
        "--idempotency-key",
        "k",
        "--cache",
        "--label",
        "a=b",
        "--label",
        "c=d",
        "--wait",
        "--wait-timeout",
        "10s",
    )
    assert args.type == "sum2"
    assert args.payload == {"first": 1}
    assert args.params == [("second", "2"), ("name", "ada")]
    assert args.delay == 5400.0
    assert args.run_at is None
    assert (args.priority, args.max_attempts) == (7, 5)
    assert (args.backoff_initial, args.backoff_multiplier) == (0.5, 3.0)
    assert (args.backoff_max, args.backoff_jitter) == (60.0, 0.0)
    assert (args.group, args.idempotency_key, args.cache) == ("g", "k", True)
    assert args.labels == [("a", "b"), ("c", "d")]
    assert (args.wait, args.wait_timeout) == (True, 10.0)


def test_create_group_and_concurrency_options() -> None:
    args = parse(
        "create",
        "fetch",
        "--group",
        "g",
        "--on-failure",
        "skip",
        "--concurrency-key",
        "acme",
        "--key-max-running",
        "3",
        "--key-max-per-second",
        "0.5",
    )
    assert (args.on_failure, args.concurrency_key) == ("skip", "acme")
    assert (args.key_max_running, args.key_max_per_second) == (3, 0.5)
    plain = parse("create", "fetch")
    assert (plain.on_failure, plain.concurrency_key) == (None, "")
    assert (plain.key_max_running, plain.key_max_per_second) == (None, None)
    # 0 is a value (it removes the key's limit), not "not given".
    zero = parse("create", "f", "--concurrency-key", "k", "--key-max-running", "0")
    assert zero.key_max_running == 0


def test_explain_and_limits_arguments() -> None:
    assert parse("explain", "t1").id == "t1"
    args = parse("limits", "foo", "--max-running", "5", "--max-per-second", "2.5")
    assert (args.type, args.max_running, args.max_per_second) == ("foo", 5, 2.5)
    only = parse("limits", "foo", "--max-running", "0")
    assert (only.max_running, only.max_per_second) == (0, None)
    assert parse("limits", "foo").max_running is None  # refused by the command, see below


def test_run_at_is_a_time() -> None:
    args = parse("create", "foo", "--run-at", "2030-01-01T00:00:00Z")
    assert args.run_at.year == 2030


def test_filters_take_repeats_and_commas() -> None:
    args = parse(
        "list",
        "--state",
        "failed,CANCELLED",
        "--state",
        "task_state_pending",
        "--type",
        "a,b",
        "--type",
        "c",
        "--label",
        "x=y",
        "--client",
        "ops",
        "--group",
        "g",
    )
    assert args.states == [
        task_pb2.TASK_STATE_FAILED,
        task_pb2.TASK_STATE_CANCELLED,
        task_pb2.TASK_STATE_PENDING,
    ]
    assert args.types == ["a", "b", "c"]
    assert args.labels == [("x", "y")]
    assert (args.client, args.group, args.limit, args.all) == ("ops", "g", 50, False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice"),
        (["create"], "the following arguments are required: type"),
        (["create", "foo", "--in", "5x"], "invalid duration '5x'"),
        (["create", "foo", "--in", "5s", "--run-at", "2030-01-01T00:00:00Z"], "not allowed"),
        (["create", "foo", "--payload", "[1]"], "must be a JSON object"),
        (["create", "foo", "-p", "novalue"], "expected key=value"),
        (["create", "foo", "--timeout", "0s"], "must be more than 0"),
        (["list", "--state", "done"], "unknown task state 'done'"),
        (["list", "--limit", "0"], "must be at least 1"),
        (["--timeout", "soon", "stats"], "invalid duration"),
        (["get"], "required: id"),
        (["explain"], "required: id"),
        (["create", "foo", "--on-failure", "retry"], "invalid choice: 'retry'"),
        (["create", "foo", "--key-max-running", "-1"], "must be 0 (no limit) or more"),
        (["create", "foo", "--key-max-running", "2.5"], "expected a whole number"),
        (["create", "foo", "--key-max-per-second", "fast"], "expected a number of starts"),
        (["limits"], "required: type"),
        (["limits", "foo", "--max-per-second", "-1"], "must be 0 (no limit) or more"),
        (["limits", "foo", "--max-per-second", "inf"], "must be 0 (no limit) or more"),
        (["limits", "foo", "--max-per-second", "nan"], "must be 0 (no limit) or more"),
    ],
)
def test_usage_errors_exit_2_before_any_call(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, environ={}) == ExitCode.USAGE
    assert message in capsys.readouterr().err


def test_bad_environment_variable_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats"], environ={"ORCHESTRATOR_TIMEOUT": "soon"}) == ExitCode.USAGE
    assert "ORCHESTRATOR_TIMEOUT" in capsys.readouterr().err


def test_wait_timeout_needs_wait(capsys: pytest.CaptureFixture[str]) -> None:
    # Checked by the command, still before any call: the scheduler address is unreachable.
    code = main(["--scheduler", "127.0.0.1:1", "create", "foo", "--wait-timeout", "1s"], environ={})
    assert code == ExitCode.USAGE
    assert "error: --wait-timeout needs --wait" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["limits", "foo"], "give --max-running, --max-per-second or both"),
        (
            ["create", "foo", "--key-max-running", "2"],
            "--key-max-running and --key-max-per-second need --concurrency-key",
        ),
    ],
)
def test_command_refusals_exit_2_before_any_call(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The scheduler address is unreachable: reaching it would be exit 4, not 2.
    assert main(["--scheduler", "127.0.0.1:1", *argv], environ={}) == ExitCode.USAGE
    assert f"error: {message}" in capsys.readouterr().err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"], environ={}) == ExitCode.OK
    help_text = capsys.readouterr().out
    assert "exit status" in help_text and "ORCHESTRATOR_SCHEDULER" in help_text
    assert main(["--version"], environ={}) == ExitCode.OK
    assert capsys.readouterr().out.startswith("taskctl ")


def test_run_schedule_and_batch_parse() -> None:
    assert parse("run", "t1").id == "t1"
    args = parse(
        "schedule",
        "create",
        "*/5 * * * *",
        "report",
        "-p",
        "n=1",
        "--tz",
        "Europe/Berlin",
        "--id",
        "nightly",
        "--catch-up",
        "all",
        "--timeout",
        "30s",
        "--cache",
        "--cache-max-age",
        "10m",
        "--label",
        "team=x",
    )
    assert (args.command, args.schedule_command, args.cron, args.type) == (
        "schedule",
        "create",
        "*/5 * * * *",
        "report",
    )
    assert (args.time_zone, args.schedule_id, args.catch_up) == ("Europe/Berlin", "nightly", "all")
    assert (args.task_timeout, args.cache, args.cache_max_age) == (30.0, True, 600.0)
    defaults = parse("schedule", "create", "0 3 * * *", "report")
    assert (defaults.time_zone, defaults.schedule_id, defaults.catch_up) == ("UTC", "", "latest")
    assert parse("schedule", "pause", "nightly").id == "nightly"
    assert parse("schedule", "list", "--no-json").json is False

    batch = parse("batch", "in.csv", "-o", "out.csv", "--timeout", "1m", "--timeout-all", "10m")
    assert (batch.input, batch.output, batch.batch_id, batch.chunk_size) == (
        "in.csv",
        "out.csv",
        "",
        500,
    )
    assert (batch.task_timeout, batch.timeout_all, batch.priority) == (60.0, 600.0, 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "required: id"),
        (["schedule"], "required: ACTION"),
        (["schedule", "create", "* * * * *"], "required: type"),
        (["schedule", "create", "* * * * *", "foo", "--catch-up", "some"], "invalid choice"),
        (["schedule", "create", "* * * * *", "foo", "--in", "5m"], "unrecognized arguments"),
        (["schedule", "get"], "required: id"),
        (["create", "foo", "--cache-max-age", "0s"], "must be more than 0"),
        (["batch", "in.csv"], "required: -o/--output"),
        (["batch", "in.csv", "-o", "o", "--chunk-size", "0"], "must be at least 1"),
        (["batch", "in.csv", "-o", "o", "--timeout-all", "soon"], "invalid duration"),
    ],
)
def test_new_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, environ={}) == ExitCode.USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "foo", "--cache-max-age", "10m"],
        ["schedule", "create", "* * * * *", "foo", "--cache-max-age", "10m"],
    ],
)
def test_cache_max_age_needs_cache(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--scheduler", "127.0.0.1:1", *argv], environ={}) == ExitCode.USAGE
    assert "error: --cache-max-age needs --cache" in capsys.readouterr().err
