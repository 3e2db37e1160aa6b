"""SchedulerConfig: every option of the scheduler, built once from flags and environment.

Each ``--flag`` also reads ``ORCHESTRATOR_<FLAG>`` (``--database`` from
``ORCHESTRATOR_DATABASE``); the flag wins. Nothing else in the scheduler reads the
environment: this object is passed down.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator_client.envargs import EnvArgumentParser
from orchestrator_client.logs import LOG_FORMATS, LOG_LEVELS
from orchestrator_client.protocol import MAX_MESSAGE_BYTES
from orchestrator_client.tracing import add_tracing_options

from .api.validation import DAY, Limits
from .domain.model import MICROS_PER_SECOND, Micros
from .domain.retention import RetentionPolicy, parse_duration
from .security.access import Guard
from .security.exposure import exposure_problem
from .security.tls import ServerTls
from .security.tokens import TokenTable
from .store.base import sqlite_path
from .store.factory import is_postgres_url
from .store.sqlite.connection import SYNCHRONOUS_LEVELS


def _micros(seconds: float) -> Micros:
    return int(seconds * MICROS_PER_SECOND)


@dataclass(frozen=True)
class SchedulerConfig:
    listen: str = "127.0.0.1:50051"
    http_listen: str = "127.0.0.1:8080"
    database: str = "./orchestrator.db"
    sqlite_synchronous: str = "FULL"
    scheduler_id: str = ""
    task_types: tuple[str, ...] = ()
    with_worker: bool = False
    worker_args: tuple[str, ...] = ()
    heartbeat_interval: float = 5.0
    lease_ttl: float = 30.0
    reap_interval: float = 1.0
    poll_interval: float = 0.1
    priority_aging: float = 1.0
    shutdown_grace: float = 30.0
    max_payload_bytes: int = 1024 * 1024
    max_schedule_ahead_days: int = 366
    default_max_attempts: int = 3
    default_timeout: float = 600.0
    idempotency_retention: float = 86_400.0
    schedule_grace: float = 60.0
    #: Retention: seconds a finished task is kept, per state (0: forever), and how pruning runs.
    retain_succeeded: float = 7 * 86_400.0
    retain_failed: float = 30 * 86_400.0
    retain_cancelled: float = 7 * 86_400.0
    retain_tombstones: float = 7 * 86_400.0
    prune_interval: float = 60.0
    prune_batch: int = 500
    #: Test hook only (``--crash-at``): exit right before or after a commit of a kind.
    crash_at: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    #: Bearer tokens (from --auth-tokens or ORCHESTRATOR_AUTH_TOKENS); None: no tokens.
    auth_tokens: TokenTable | None = field(default=None, repr=False, compare=False)
    insecure: bool = False
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_concurrent_streams: int = 1000
    max_concurrent_rpcs: int = 10_000
    log_level: str = "info"
    log_format: str = "text"
    #: Where spans go (an OTLP/HTTP traces URL); empty: tracing off. See ``tracing.py``.
    otlp_endpoint: str = ""
    service_name: str = "orchestrator-scheduler"

    @property
    def tls(self) -> ServerTls | None:
        if not self.tls_cert:
            return None
        return ServerTls(self.tls_cert, self.tls_key, self.tls_client_ca)

    @property
    def authenticated(self) -> bool:
        """Callers must authenticate (tokens, client certificates, or both)."""
        return self.auth_tokens is not None or bool(self.tls_client_ca)

    def guard(self) -> Guard:
        return Guard(self.auth_tokens, client_certificates=bool(self.tls_client_ca))

    @property
    def database_path(self) -> str:
        """The SQLite file (a ValueError for a PostgreSQL URL: see :attr:`on_postgres`)."""
        return sqlite_path(self.database)

    @property
    def on_postgres(self) -> bool:
        return is_postgres_url(self.database)

    @property
    def limits(self) -> Limits:
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_schedule_ahead=self.max_schedule_ahead_days * DAY,
            default_max_attempts=self.default_max_attempts,
            default_timeout=_micros(self.default_timeout),
        )

    @classmethod
    def from_args(cls, argv: Sequence[str] | None, environ: Mapping[str, str]) -> SchedulerConfig:
        parser = build_parser(environ)
        args = parser.parse_args(argv)
        try:
            tokens = _tokens(args.auth_tokens, environ)
            config = cls(
                listen=args.listen,
                http_listen=args.http_listen,
                database=args.database,
                sqlite_synchronous=args.sqlite_synchronous.upper(),
                scheduler_id=args.scheduler_id or default_scheduler_id(),
                task_types=tuple(_split(args.task_types)),
                with_worker=args.with_worker,
                worker_args=tuple(args.worker_arg or ()),
                heartbeat_interval=args.heartbeat_interval,
                lease_ttl=args.lease_ttl,
                reap_interval=args.reap_interval,
                poll_interval=args.poll_interval,
                priority_aging=args.priority_aging,
                shutdown_grace=args.shutdown_grace,
                max_payload_bytes=args.max_payload_bytes,
                max_schedule_ahead_days=args.max_schedule_ahead_days,
                default_max_attempts=args.default_max_attempts,
                default_timeout=args.default_timeout,
                idempotency_retention=args.idempotency_retention,
                schedule_grace=args.schedule_grace,
                retain_succeeded=args.retain_succeeded,
                retain_failed=args.retain_failed,
                retain_cancelled=args.retain_cancelled,
                retain_tombstones=args.retain_tombstones,
                prune_interval=args.prune_interval,
                prune_batch=args.prune_batch,
                crash_at=args.crash_at,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                tls_client_ca=args.tls_client_ca,
                auth_tokens=tokens,
                insecure=args.insecure,
                max_message_bytes=args.max_message_bytes,
                max_concurrent_streams=args.max_concurrent_streams,
                max_concurrent_rpcs=args.max_concurrent_rpcs,
                log_level=args.log_level,
                log_format=args.log_format,
                otlp_endpoint=args.otlp_endpoint,
                service_name=args.service_name,
            )
            config.validate()
        except ValueError as exc:
            parser.error(str(exc))
        return config

    def validate(self) -> None:
        if not self.on_postgres:
            self.database_path  # noqa: B018 - raises ValueError for a bad path or URL
        checks = [
            (self.heartbeat_interval > 0, "--heartbeat-interval must be above 0"),
            (
                self.lease_ttl >= 2 * self.heartbeat_interval,
                "--lease-ttl must be at least twice --heartbeat-interval",
            ),
            (self.reap_interval > 0, "--reap-interval must be above 0"),
            (0 < self.poll_interval <= 10, "--poll-interval must be in (0, 10] seconds"),
            (self.priority_aging > 0, "--priority-aging must be above 0"),
            (self.shutdown_grace >= 0, "--shutdown-grace must not be negative"),
            (self.max_payload_bytes >= 1024, "--max-payload-bytes must be at least 1024"),
            (self.max_schedule_ahead_days >= 1, "--max-schedule-ahead-days must be at least 1"),
            (1 <= self.default_max_attempts <= 100, "--default-max-attempts must be 1 to 100"),
            (1 <= self.default_timeout <= 86400, "--default-timeout must be 1 to 86400 seconds"),
            (self.idempotency_retention >= 1, "--idempotency-retention must be at least 1 second"),
            (self.schedule_grace >= 0, "--schedule-grace must not be negative"),
            (self.retain_succeeded >= 0, "--retain-succeeded must not be negative"),
            (self.retain_failed >= 0, "--retain-failed must not be negative"),
            (self.retain_cancelled >= 0, "--retain-cancelled must not be negative"),
            (self.retain_tombstones >= 0, "--retain-tombstones must not be negative"),
            (0 < self.prune_interval <= 86_400, "--prune-interval must be in (0, 1d]"),
            (1 <= self.prune_batch <= 10_000, "--prune-batch must be 1 to 10000"),
            (
                self.max_message_bytes > self.max_payload_bytes,
                "--max-message-bytes must be above --max-payload-bytes",
            ),
            (self.max_concurrent_streams >= 1, "--max-concurrent-streams must be at least 1"),
            (self.max_concurrent_rpcs >= 1, "--max-concurrent-rpcs must be at least 1"),
            (
                bool(self.tls_cert) == bool(self.tls_key),
                "--tls-cert and --tls-key go together",
            ),
            (not self.tls_client_ca or bool(self.tls_cert), "--tls-client-ca needs --tls-cert"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.tls is not None:
            self.tls.check()
        for name, address in (("gRPC", self.listen), ("HTTP", self.http_listen)):
            if name == "HTTP" and not self.http_enabled:
                continue
            problem = exposure_problem(
                name,
                address,
                authenticated=self.authenticated,
                tls=self.tls is not None,
                insecure=self.insecure,
            )
            if problem:
                raise ValueError(problem)

    @property
    def retention(self) -> RetentionPolicy:
        return RetentionPolicy.from_seconds(
            succeeded=self.retain_succeeded,
            failed=self.retain_failed,
            cancelled=self.retain_cancelled,
            tombstones=self.retain_tombstones,
        )

    @property
    def http_enabled(self) -> bool:
        return self.http_listen.lower() not in ("", "off", "none")


AUTH_TOKENS_VARIABLE = "ORCHESTRATOR_AUTH_TOKENS"


def _tokens(path: str, environ: Mapping[str, str]) -> TokenTable | None:
    """The tokens of ``--auth-tokens FILE``, else of the variable's content, else None."""
    if path:
        return TokenTable.read(path)
    text = environ.get(AUTH_TOKENS_VARIABLE, "")
    if text.strip():
        return TokenTable.parse(text, AUTH_TOKENS_VARIABLE)
    return None


def default_scheduler_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def _split(values: Sequence[str] | None) -> list[str]:
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def build_parser(environ: Mapping[str, str]) -> EnvArgumentParser:
    p = EnvArgumentParser(
        prog="orchestrator-scheduler",
        description="The task-orchestrator scheduler: gRPC API, lease stream, SQLite store. "
        "Database commands, which run once and exit: `orchestrator-scheduler migrate` and "
        "`orchestrator-scheduler copy` (--help on each).",
        environ=environ,
    )
    p.add_config_option()
    net = p.add_argument_group("network")
    net.add_argument(
        "--listen", default=SchedulerConfig.listen, metavar="HOST:PORT", help="gRPC address"
    )
    net.add_argument(
        "--http-listen",
        default=SchedulerConfig.http_listen,
        metavar="HOST:PORT",
        help="HTTP address for /healthz, /readyz, /metrics ('off' to disable)",
    )
    security = p.add_argument_group("security (see the README's Security section)")
    security.add_argument(
        "--tls-cert", default="", metavar="PEM", help="server certificate: TLS on both listeners"
    )
    security.add_argument("--tls-key", default="", metavar="PEM", help="the --tls-cert's key")
    security.add_argument(
        "--tls-client-ca",
        default="",
        metavar="PEM",
        help="require gRPC clients to present a certificate signed by this CA (mutual TLS; "
        "the subject's CN is the principal, its OU the role)",
    )
    security.add_argument(
        "--auth-tokens",
        default="",
        metavar="FILE",
        env=False,  # the variable holds the file's content, not its path
        env_read_elsewhere=AUTH_TOKENS_VARIABLE,
        help="bearer tokens, one 'TOKEN ROLE PRINCIPAL' a line (mode 0600); the variable "
        f"holds the same lines [env {AUTH_TOKENS_VARIABLE}]",
    )
    security.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening beyond loopback without authentication and TLS",
    )
    store = p.add_argument_group("storage")
    store.add_argument(
        "--database",
        default=SchedulerConfig.database,
        metavar="PATH|URL",
        help="SQLite path or sqlite:///path; or postgresql://user@host:port/db for replicas "
        "on one PostgreSQL server (the postgres extra)",
    )
    store.add_argument(
        "--sqlite-synchronous",
        default="FULL",
        type=str.upper,
        choices=SYNCHRONOUS_LEVELS,
        help="FULL survives power loss; NORMAL may lose the last commits (see Guarantees)",
    )
    sched = p.add_argument_group("scheduling")
    sched.add_argument(
        "--scheduler-id",
        default="",
        metavar="ID",
        help="name of this process, in logs and worker lists (default: HOST-PID-XXXX)",
    )
    sched.add_argument(
        "--task-types",
        action="append",
        metavar="TYPES",
        help="task types to accept before any worker declares them (comma separated)",
    )
    sched.add_argument(
        "--heartbeat-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between worker heartbeats",
    )
    sched.add_argument(
        "--lease-ttl",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds without heartbeat before a lease expires",
    )
    sched.add_argument(
        "--reap-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between expiry scans",
    )
    sched.add_argument(
        "--poll-interval",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="seconds between checks for commits by other scheduler processes",
    )
    sched.add_argument(
        "--priority-aging",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds of waiting worth one priority point (starvation bound)",
    )
    sched.add_argument(
        "--shutdown-grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds to drain workers on SIGTERM",
    )
    limits = p.add_argument_group("limits")
    limits.add_argument(
        "--max-payload-bytes",
        type=int,
        default=1024 * 1024,
        metavar="BYTES",
        help="largest payload or result, as JSON bytes",
    )
    limits.add_argument(
        "--max-schedule-ahead-days",
        type=int,
        default=366,
        metavar="DAYS",
        help="how far ahead run_at may be",
    )
    limits.add_argument(
        "--max-message-bytes",
        type=int,
        default=MAX_MESSAGE_BYTES,
        metavar="BYTES",
        help="largest gRPC message received or sent (RESOURCE_EXHAUSTED above)",
    )
    limits.add_argument(
        "--max-concurrent-streams",
        type=int,
        default=1000,
        metavar="N",
        help="concurrent calls per client connection (HTTP/2 streams); more are refused with "
        "UNAVAILABLE, which clients retry",
    )
    limits.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=10_000,
        metavar="N",
        help="calls in progress on the whole server, watches and worker streams included "
        "(RESOURCE_EXHAUSTED above)",
    )
    limits.add_argument(
        "--default-max-attempts",
        type=int,
        default=3,
        metavar="N",
        help="max_attempts when a task gives none",
    )
    limits.add_argument(
        "--default-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="seconds per attempt when a task gives no timeout",
    )
    sched.add_argument(
        "--idempotency-retention",
        type=float,
        default=86_400.0,
        metavar="SECONDS",
        help="seconds an idempotency key keeps returning its first task",
    )
    sched.add_argument(
        "--schedule-grace",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds a missed schedule slot still fires late; older ones follow catch_up",
    )
    # The fault suite's hook (tests/faults): not for production, so not in --help.
    p.add_argument("--crash-at", default="", help=argparse.SUPPRESS)
    _add_retention_options(p.add_argument_group("retention"))
    dev = p.add_argument_group("development")
    dev.add_argument(
        "--with-worker",
        action="store_true",
        help="also start a worker with the built-in task types (development mode)",
    )
    dev.add_argument(
        "--worker-arg",
        action="append",
        env=False,
        metavar="ARG",
        help="extra argument for the --with-worker worker (repeatable), "
        "e.g. --worker-arg=--slots=4",
    )
    logs = p.add_argument_group("logging")
    logs.add_argument(
        "--log-level", default="info", choices=LOG_LEVELS, help="least severe level logged"
    )
    logs.add_argument(
        "--log-format", default="text", choices=LOG_FORMATS, help="readable text or JSON lines"
    )
    add_tracing_options(p.add_argument_group("tracing"), service_name=SchedulerConfig.service_name)
    return p


def _duration(text: str) -> float:
    """argparse's form of :func:`parse_duration`: its message, not "invalid value"."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_retention_options(group: argparse._ArgumentGroup) -> None:
    """Durations take seconds or one unit suffix (90s, 30m, 12h, 7d); 0 keeps forever."""
    for state, default in (("succeeded", "7d"), ("failed", "30d"), ("cancelled", "7d")):
        group.add_argument(
            f"--retain-{state}",
            type=_duration,
            default=default,
            metavar="DURATION",
            help=f"how long a {state.upper()} task is kept after it finished "
            "(seconds, or 30m, 12h, 7d; 0: forever)",
        )
    group.add_argument(
        "--retain-tombstones",
        type=_duration,
        default="7d",
        metavar="DURATION",
        help="how long a deleted or pruned task stays in the change feed as a deletion "
        "(WatchTasks resuming from before one pruned answers FAILED_PRECONDITION; 0: forever)",
    )
    group.add_argument(
        "--prune-interval",
        type=_duration,
        default="60s",
        metavar="DURATION",
        help="time between prune rounds",
    )
    group.add_argument(
        "--prune-batch",
        type=int,
        default=500,
        metavar="ROWS",
        help="tasks removed per write transaction (a round repeats until a batch is short)",
    )
