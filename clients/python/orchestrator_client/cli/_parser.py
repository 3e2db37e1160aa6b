"""``taskctl``'s command line: global options, one subparser per command.

Only the global options read ``ORCHESTRATOR_*`` variables (``--scheduler`` ↔
``ORCHESTRATOR_SCHEDULER``, ``--client-id`` ↔ ``ORCHESTRATOR_CLIENT_ID``, …): a variable that
silently filtered ``list`` or changed a task's ``--timeout`` would surprise. Parsing only
parses; ``_commands`` checks what depends on several options at once.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from typing import Any

from .._states import parse_state, state_names
from .._version import __version__
from ..envargs import EnvArgumentParser
from ..protocol import DEFAULT_SCHEDULER_ADDRESS
from ._completion import SHELLS, Hints
from ._values import (
    load_payload,
    parse_duration,
    parse_key_value,
    parse_time,
)

EPILOG = """\
exit status: 0 done (the task SUCCEEDED for --wait/watch, every row for batch), 1 the task
ended FAILED or CANCELLED (batch: some row did not succeed), 2 usage error, 3 the scheduler
answered an error (or a wait timed out), 4 the scheduler is unreachable.
"""


def _argument(convert: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Give argparse a converter whose ``ValueError`` message reaches the user as written."""

    def converter(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    converter.__name__ = name
    return converter


duration = _argument(parse_duration, "duration")
key_value = _argument(parse_key_value, "key=value")
payload = _argument(load_payload, "payload")
time = _argument(parse_time, "time")
state_list = _argument(
    lambda text: [parse_state(part) for part in text.split(",") if part.strip()], "states"
)
type_list = _argument(lambda text: [p.strip() for p in text.split(",") if p.strip()], "types")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


positive_int = _argument(_positive_int, "count")

#: What shell completion cannot learn from the parser: the arguments whose value is a file's
#: path, and the words of options that check their values in ``type`` (no ``choices``).
COMPLETION_HINTS = Hints(
    path_dests=frozenset({"tls_ca", "tls_cert", "tls_key", "input", "output"}),
    words={"states": state_names()},
)

#: The most tasks ``batch`` sends in one BatchCreateTasks call.
MAX_CHUNK_SIZE = 500


def _chunk_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_CHUNK_SIZE:
        raise ValueError(f"must be at most {MAX_CHUNK_SIZE}, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(f"must be more than 0, got {text!r}")
    return value


positive_seconds = _argument(_positive_seconds, "seconds")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"must be 0 (no limit) or more, got {value}")
    return value


non_negative_int = _argument(_non_negative_int, "count")


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of starts per second, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be 0 (no limit) or more, got {text!r}")
    return value


rate = _argument(_rate, "rate")


def build_parser(environ: Mapping[str, str]) -> EnvArgumentParser:
    parser = EnvArgumentParser(
        prog="taskctl",
        description="Create, inspect and steer the tasks of a task-orchestrator scheduler.",
        epilog=EPILOG,
        environ=environ,
        # Defaults are written into the help texts: the automatic "(default: None)" is noise.
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scheduler",
        default=DEFAULT_SCHEDULER_ADDRESS,
        metavar="HOST:PORT",
        help=f"the scheduler's gRPC address (default {DEFAULT_SCHEDULER_ADDRESS})",
    )
    parser.add_argument(
        "--client-id",
        default="",
        metavar="ID",
        help="who is calling; recorded as the `client` of created tasks",
    )
    parser.add_argument(
        "--token",
        default="",
        metavar="TOKEN",
        help="bearer token for a scheduler with authentication on (prefer the variable: a "
        "command line is visible to other users; without TLS, for loopback only)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="connect with TLS, trusting the system's roots (implied by the other --tls-*)",
    )
    parser.add_argument(
        "--tls-ca", default="", metavar="PEM", help="trust the scheduler's certificate from this CA"
    )
    parser.add_argument(
        "--tls-cert", default="", metavar="PEM", help="client certificate (mutual TLS)"
    )
    parser.add_argument("--tls-key", default="", metavar="PEM", help="the --tls-cert's key")
    parser.add_argument(
        "--tls-server-name",
        default="",
        metavar="NAME",
        help="the name the scheduler's certificate must carry, if not the address's host",
    )
    parser.add_argument(
        "--timeout",
        dest="rpc_timeout",
        type=positive_seconds,
        default=10.0,
        metavar="DURATION",
        help="deadline of each call: 30s, 1m or seconds (default 10s)",
    )
    parser.add_argument(
        "--json",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="JSON output (the default when stdout is not a terminal)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Plain parsers for the commands: their options read no environment variables.
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=argparse.ArgumentParser
    )

    # --json/--no-json are also accepted after the command, where people tend to type them;
    # SUPPRESS leaves the global value alone unless the flag is given there.
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "--json", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help="JSON"
    )

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, parents=[output])

    _add_create(command("create", "create a task (and with --wait, wait for its end)"))
    command("get", "one task with its attempt history").add_argument("id")
    _add_list(command("list", "tasks matching filters, newest first"))
    command("delete", "delete a task (a running one is stopped first)").add_argument("id")
    _add_delete_all(command("delete-all", "delete every task matching filters"))
    command("cancel", "stop a task; it stays, as CANCELLED").add_argument("id")
    command("retry", "put a FAILED or CANCELLED task back to PENDING").add_argument("id")
    command("run", "make a SCHEDULED task (run_at ahead, or backing off) due now").add_argument(
        "id"
    )
    command("watch", "print each change of a task until it ends").add_argument("id")
    command("explain", "why a task is not running now").add_argument("id")
    command("types", "task types with their state, limits and counts")
    command("pause", "stop leasing tasks of a type").add_argument("type")
    command("resume", "lease tasks of a type again").add_argument("type")
    _add_limits(command("limits", "set how many tasks of a type run at once and start per second"))
    command("workers", "workers connected now")
    command("stats", "counts per state and type, retries, throughput, lateness")
    _add_schedule(
        command("schedule", "recurring schedules: create, list, get, delete, pause, resume"), output
    )
    _add_batch(command("batch", "create a task per row of a CSV file, wait, write a results CSV"))
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for SHELL, made from taskctl's own commands "
        "and flags. Load it with `source <(taskctl completion bash)` (zsh likewise), or "
        "`taskctl completion fish | source`; put that line in the shell's startup file "
        "to keep it.",
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    return parser


def _add_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("type", help="a task type the scheduler knows (see `taskctl types`)")
    _add_payload(parser)
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--run-at", type=time, metavar="ISO8601", help="not before this time")
    when.add_argument("--in", dest="delay", type=duration, metavar="DURATION", help="e.g. 5m")
    _add_task_options(parser)
    parser.add_argument(
        "--idempotency-key", default="", metavar="KEY", help="a repeat returns the first task"
    )
    parser.add_argument("--wait", action="store_true", help="wait until the task ends")
    parser.add_argument(
        "--wait-timeout",
        type=positive_seconds,
        metavar="DURATION",
        help="with --wait, give up after this long",
    )


def _add_payload(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--payload", type=payload, metavar="JSON", help="a JSON object, or @file.json"
    )
    parser.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a payload field (repeatable); VALUE is JSON if it parses, else a string",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """How each task runs: the options ``create``, ``schedule create`` and ``batch`` share."""
    parser.add_argument("--priority", type=int, default=0, help="0 to 1000; higher first")
    parser.add_argument("--max-attempts", type=int, metavar="N", help="1 to 100")
    parser.add_argument(
        "--timeout",
        dest="task_timeout",
        type=positive_seconds,
        metavar="DURATION",
        help="per attempt, e.g. 30s",
    )


def _add_task_options(parser: argparse.ArgumentParser) -> None:
    """Everything of a task but its type, payload and start: shared by ``create`` and
    ``schedule create`` (whose template takes the same options)."""
    _add_run_options(parser)
    parser.add_argument("--backoff-initial", type=duration, metavar="DURATION")
    parser.add_argument("--backoff-multiplier", type=float, metavar="X")
    parser.add_argument("--backoff-max", type=duration, metavar="DURATION")
    parser.add_argument("--backoff-jitter", type=float, metavar="FRACTION")
    parser.add_argument("--group", default="", help="run one at a time with its group")
    parser.add_argument(
        "--on-failure",
        choices=("block", "skip"),
        help="if the task ends FAILED, its group waits for it (block, the default) or goes on",
    )
    parser.add_argument(
        "--concurrency-key",
        default="",
        metavar="KEY",
        help="run within the limits of this key, shared across types",
    )
    parser.add_argument(
        "--key-max-running",
        type=non_negative_int,
        metavar="N",
        help="the key's limit of tasks running at once (0: none); needs --concurrency-key",
    )
    parser.add_argument(
        "--key-max-per-second",
        type=rate,
        metavar="R",
        help="the key's limit of starts a second (0: none); with only one of the two key "
        "limits given, the other is set to 0",
    )
    parser.add_argument(
        "--cache",
        action="store_true",
        help="reuse the result of an identical task (same type and payload), or join it while "
        "it runs, instead of running",
    )
    parser.add_argument(
        "--cache-max-age",
        type=positive_seconds,
        metavar="DURATION",
        help="with --cache, reuse only a result at most this old, e.g. 10m (default: any age)",
    )
    _add_labels(parser, "a label to attach (repeatable)")


def _add_schedule(parser: argparse.ArgumentParser, output: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(
        dest="schedule_command",
        required=True,
        metavar="ACTION",
        parser_class=argparse.ArgumentParser,
    )

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help_text, description=help_text, parents=[output])

    create = action("create", "create a schedule: each slot of CRON creates a task of TYPE")
    create.add_argument(
        "cron",
        help="five fields, minute hour day month weekday (six with seconds last); quote it: "
        "'*/15 * * * *'",
    )
    create.add_argument("type", help="the task type each slot creates")
    _add_payload(create)
    create.add_argument(
        "--tz",
        dest="time_zone",
        default="UTC",
        metavar="ZONE",
        help="the IANA time zone CRON is read in, e.g. Europe/Berlin (default UTC)",
    )
    create.add_argument(
        "--id",
        dest="schedule_id",
        default="",
        metavar="ID",
        help="the schedule's id (default: the scheduler makes one)",
    )
    create.add_argument(
        "--catch-up",
        choices=("latest", "skip", "all"),
        default="latest",
        help="slots missed while no scheduler ran or the schedule was paused: fire the "
        "latest once (default), none, or all",
    )
    _add_task_options(create)
    action("list", "every schedule")
    action("get", "one schedule").add_argument("id")
    action("delete", "delete a schedule (the tasks it created stay)").add_argument("id")
    action("pause", "stop a schedule firing").add_argument("id")
    action("resume", "let a paused schedule fire again").add_argument("id")


def _add_batch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        help="a CSV file with a header; columns task_id and task_type, every other column a "
        "payload field (JSON when the cell parses as JSON, else text; empty cells left out)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="where to write the results CSV (input order: task_id, task_type, final_status, "
        "error_info, scheduler_task_id, then the result fields)",
    )
    parser.add_argument(
        "--batch-id",
        default="",
        metavar="ID",
        help="labels the tasks batch=ID and scopes their idempotency keys (default: the input "
        "file's name without its extension); re-running with the same ID and --client-id "
        "creates nothing twice",
    )
    _add_run_options(parser)
    parser.add_argument(
        "--timeout-all",
        type=positive_seconds,
        metavar="DURATION",
        help="stop waiting this long after the start (submitting always completes); "
        "unfinished rows are written with their current state and the exit status is 3",
    )
    parser.add_argument(
        "--chunk-size",
        type=_argument(_chunk_size, "count"),
        default=MAX_CHUNK_SIZE,
        metavar="N",
        help=f"tasks per BatchCreateTasks call, 1 to {MAX_CHUNK_SIZE} (default {MAX_CHUNK_SIZE})",
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        dest="states",
        action="extend",
        type=state_list,
        default=[],
        metavar="STATE",
        help=f"repeatable or comma-separated; of {', '.join(state_names())}",
    )
    parser.add_argument(
        "--type",
        dest="types",
        action="extend",
        type=type_list,
        default=[],
        metavar="TYPE",
        help="a task type (repeatable or comma-separated)",
    )
    parser.add_argument("--client", default="", help="tasks created by this client")
    parser.add_argument("--group", default="", help="tasks of this group")
    _add_labels(parser, "tasks carrying this label (repeatable)")


def _add_labels(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--label",
        dest="labels",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help=help_text,
    )


def _add_list(parser: argparse.ArgumentParser) -> None:
    _add_filters(parser)
    parser.add_argument(
        "--limit", type=positive_int, default=50, metavar="N", help="at most N tasks (50)"
    )
    parser.add_argument("--all", action="store_true", help="every matching task (all pages)")
    parser.add_argument("--page-token", default="", metavar="TOKEN", help="continue a listing")
    parser.add_argument("--oldest-first", action="store_true", help="oldest first")


def _add_delete_all(parser: argparse.ArgumentParser) -> None:
    _add_filters(parser)
    parser.add_argument(
        "--all", action="store_true", help="no filter: every task (needs --yes as well)"
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("type", help="a task type (see `taskctl types`)")
    parser.add_argument(
        "--max-running",
        type=non_negative_int,
        metavar="N",
        help="at most N running at once, across schedulers; 0 removes the limit",
    )
    parser.add_argument(
        "--max-per-second",
        type=rate,
        metavar="R",
        help="at most R starts a second (0.1: one every 10s); 0 removes the limit",
    )
    parser.epilog = "Give one or both; a limit not given keeps its current value."
