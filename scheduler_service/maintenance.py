"""``orchestrator-scheduler migrate`` and ``orchestrator-scheduler copy``: the database
commands, which run once and exit without starting any server.

``__main__`` hands over here when the first argument is one of :data:`COMMANDS`; plain
``orchestrator-scheduler [flags]`` stays the scheduler. Each command prints what it did on
stdout and exits 0; a database it cannot use is exit 1 with one line on stderr naming the
database without its password; bad arguments are exit 2 (argparse).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence

from orchestrator_client.envargs import EnvArgumentParser
from orchestrator_client.logs import configure_logging

from .config import build_parser
from .store.copy import SKIPPED_TABLES, CopyRefused, copy_sqlite_to_postgres
from .store.errors import DatabaseUnusable
from .store.schema import migrate_database, shown

COMMANDS = ("migrate", "copy")
PROG = "orchestrator-scheduler"


def is_command(argv: Sequence[str]) -> bool:
    return bool(argv) and argv[0] in COMMANDS


def run_command(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run ``argv[0]`` (one of :data:`COMMANDS`) with the rest of ``argv``."""
    command, rest = argv[0], list(argv[1:])
    if command == "migrate":
        return _migrate(rest, environ)
    return _copy(rest, environ)


def _migrate(argv: list[str], environ: Mapping[str, str]) -> int:
    # The scheduler's own parser: --database, ORCHESTRATOR_DATABASE and --config files
    # read exactly as when it starts (other flags are accepted and ignored).
    parser = build_parser(environ)
    parser.prog = f"{PROG} migrate"
    parser.usage = f"{PROG} migrate [--database PATH|URL] [--config FILE]"
    parser.description = (
        "Apply the schema migrations of the database --database names (SQLite or "
        "PostgreSQL) and exit, without starting the scheduler. The scheduler's other "
        "options are accepted (a shared --config file works) and ignored."
    )
    args = parser.parse_args(argv)
    configure_logging("warning", args.log_format)
    database: str = args.database
    try:
        applied = asyncio.run(migrate_database(database))
    except (DatabaseUnusable, ValueError) as exc:
        return _fail(exc)
    if applied:
        for name in applied:
            print(f"applied {name}")
        print(f"{shown(database)}: {len(applied)} migration(s) applied")
    else:
        print(f"{shown(database)}: the schema is current, nothing to apply")
    return 0


def _copy_parser(environ: Mapping[str, str]) -> EnvArgumentParser:
    parser = EnvArgumentParser(
        prog=f"{PROG} copy",
        description="Copy every task, schedule and deletion record of a stopped SQLite "
        "database into an empty PostgreSQL database (migrated first), keeping ids and "
        "revisions. See the README: Moving from SQLite to PostgreSQL.",
        environ=environ,
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        env=False,
        metavar="PATH",
        help="the SQLite database: a path or sqlite:///path (its schedulers stopped)",
    )
    parser.add_argument(
        "--to",
        dest="target",
        required=True,
        env=False,
        metavar="URL",
        help="an empty PostgreSQL database: postgresql://user@host:port/db",
    )
    parser.add_argument(
        "--expire-leases",
        action="store_true",
        env=False,
        help="copy RUNNING tasks with an expired lease (they run again on PostgreSQL) "
        "instead of refusing",
    )
    return parser


def _copy(argv: list[str], environ: Mapping[str, str]) -> int:
    args = _copy_parser(environ).parse_args(argv)
    configure_logging("warning", "text")
    try:
        report = asyncio.run(
            copy_sqlite_to_postgres(args.source, args.target, expire_leases=args.expire_leases)
        )
    except (DatabaseUnusable, CopyRefused, ValueError) as exc:
        return _fail(exc)
    for name in report.migrations:
        print(f"applied {name}")
    for table, rows in report.rows.items():
        print(f"{table}: {rows} rows")
    for key, value in sorted(report.meta.items()):
        print(f"meta {key}: {value}")
    if report.expired_leases:
        print(f"leases expired: {report.expired_leases} RUNNING task(s) will run again")
    print(f"not copied: {', '.join(SKIPPED_TABLES)} (workers reconnect; rate windows refill)")
    print(f"copied {args.source} into {shown(args.target)}")
    return 0


def _fail(exc: BaseException) -> int:
    print(f"{PROG}: {exc}", file=sys.stderr)
    return 1
