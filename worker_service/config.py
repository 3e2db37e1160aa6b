"""The worker's configuration: one frozen, validated :class:`WorkerConfig`, built once in
``__main__`` from the command line and ``ORCHESTRATOR_*`` variables, then passed down.

Nothing else in the worker reads ``os.environ``; the environment is a parameter here so that
tests build configurations from plain dictionaries.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator_client.channel import TlsConfig
from orchestrator_client.envargs import EnvArgumentParser
from orchestrator_client.logs import LOG_FORMATS, LOG_LEVELS
from orchestrator_client.protocol import DEFAULT_SCHEDULER_ADDRESS
from orchestrator_client.tracing import add_tracing_options

from .context import DEFAULT_FETCH_MAX_BYTES, HandlerSettings
from .fetch_policy import parse_allow_entry

MAX_SLOTS = 10_000
MAX_WORKER_ID = 128
#: The largest ``--fetch-max-bytes``: a fetched body is held in memory.
MAX_FETCH_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class WorkerConfig:
    #: Scheduler addresses (``host:port``) in failover order; see :mod:`worker_service.backoff`.
    schedulers: tuple[str, ...] = (DEFAULT_SCHEDULER_ADDRESS,)
    worker_id: str = "worker"
    slots: int = 10
    #: Served types; empty means every registered handler.
    task_types: tuple[str, ...] = ()
    #: Modules to import for user handlers.
    modules: tuple[str, ...] = ()
    bar_url: str = ""
    fetch_url: str = ""
    #: What ``bar`` and ``process_data`` may fetch besides the public internet.
    fetch_allow: tuple[str, ...] = ()
    fetch_max_bytes: int = DEFAULT_FETCH_MAX_BYTES
    outbox_dir: Path = Path("outbox")
    reports_dir: Path = Path("reports")
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "orchestrator@localhost"
    cpu_workers: int = 1
    shutdown_grace: float = 30.0
    reconnect_max_delay: float = 10.0
    foo_seconds: float = 3.0
    #: TLS towards the scheduler (None: an insecure channel, for loopback).
    tls: TlsConfig | None = None
    #: Bearer token of a ``worker`` role (never logged, not even in this object's repr).
    token: str = field(default="", repr=False)
    log_level: str = "info"
    log_format: str = "text"
    #: Where spans go (an OTLP/HTTP traces URL); empty: tracing off. See ``tracing.py``.
    otlp_endpoint: str = ""
    service_name: str = "orchestrator-worker"

    def __post_init__(self) -> None:
        if not self.schedulers:
            raise ValueError("a worker needs at least one scheduler address")

    @classmethod
    def from_args(cls, argv: Sequence[str] | None, environ: Mapping[str, str]) -> WorkerConfig:
        """Parse ``argv`` (flags win) over ``environ`` (``ORCHESTRATOR_*``) over defaults.

        A bad value exits through the parser (status 2) with a message naming the flag or
        the variable.
        """
        parser = build_parser(environ)
        args = parser.parse_args(argv)
        try:
            tls = _tls(args)
        except ValueError as exc:
            parser.error(str(exc))
        return cls(
            schedulers=tuple(args.scheduler),
            worker_id=args.worker_id,
            slots=args.slots,
            task_types=tuple(dict.fromkeys(args.task_types)),
            modules=tuple(dict.fromkeys(args.module)),
            bar_url=args.bar_url,
            fetch_url=args.fetch_url,
            fetch_allow=tuple(dict.fromkeys(args.fetch_allow)),
            fetch_max_bytes=args.fetch_max_bytes,
            outbox_dir=Path(args.outbox_dir),
            reports_dir=Path(args.reports_dir),
            smtp_host=args.smtp_host,
            smtp_port=args.smtp_port,
            smtp_from=args.smtp_from,
            cpu_workers=args.cpu_workers,
            shutdown_grace=args.shutdown_grace,
            reconnect_max_delay=args.reconnect_max_delay,
            foo_seconds=args.foo_seconds,
            tls=tls,
            token=args.token,
            log_level=args.log_level,
            log_format=args.log_format,
            otlp_endpoint=args.otlp_endpoint,
            service_name=args.service_name,
        )

    def handler_settings(self) -> HandlerSettings:
        """The part of the configuration that handlers see."""
        return HandlerSettings(
            bar_url=self.bar_url,
            fetch_url=self.fetch_url,
            fetch_allow=self.fetch_allow,
            fetch_max_bytes=self.fetch_max_bytes,
            outbox_dir=self.outbox_dir,
            reports_dir=self.reports_dir,
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            smtp_from=self.smtp_from,
            foo_seconds=self.foo_seconds,
        )


def default_worker_id() -> str:
    """``<hostname>-<pid>``: stable across reconnects of one process, unique per process."""
    return f"{socket.gethostname()}-{os.getpid()}"[:MAX_WORKER_ID]


def build_parser(environ: Mapping[str, str]) -> EnvArgumentParser:
    parser = EnvArgumentParser(
        prog="orchestrator-worker",
        description="Run task handlers for a task-orchestrator scheduler.",
        environ=environ,
    )
    parser.add_config_option()
    add = parser.add_argument_group("connection").add_argument
    add(
        "--scheduler",
        type=address_list,
        default=DEFAULT_SCHEDULER_ADDRESS,
        metavar="HOST:PORT[,HOST:PORT...]",
        help="the scheduler's gRPC address, host:port; several, comma-separated, are tried "
        "in turn (failover between scheduler processes sharing one database)",
    )
    add(
        "--worker-id",
        type=_worker_id,
        default=default_worker_id(),
        metavar="ID",
        help="this worker's id (1 to 128 characters), stable across reconnects",
    )
    add(
        "--slots",
        type=_int_range(1, MAX_SLOTS),
        default=10,
        metavar="N",
        help=f"tasks run at once (1 to {MAX_SLOTS})",
    )
    add(
        "--shutdown-grace",
        type=_float_range(0, 86_400),
        default=30.0,
        metavar="SECONDS",
        help="seconds running tasks may finish after SIGTERM before they are returned",
    )
    add(
        "--reconnect-max-delay",
        type=_float_range(0.01, 3_600),
        default=10.0,
        metavar="SECONDS",
        help="longest pause in seconds between reconnection attempts",
    )
    add = parser.add_argument_group("handlers").add_argument
    add(
        "--task-types",
        type=_comma_list,
        action=_ListAction,
        default=[],
        metavar="TYPES",
        help="comma-separated task types to serve (default: every registered handler)",
    )
    add(
        "--module",
        type=_comma_list,
        action=_ListAction,
        default=[],
        metavar="MODULES",
        help="Python module(s) with @handler functions to import; repeatable or comma-separated",
    )
    add(
        "--cpu-workers",
        type=_int_range(1, 1024),
        default=os.cpu_count() or 1,
        metavar="N",
        help="processes for cpu-bound handlers (default: the number of CPUs)",
    )
    add = parser.add_argument_group("built-in task types").add_argument
    add(
        "--bar-url", default="", metavar="URL", help="URL `bar` fetches when the payload has no url"
    )
    add(
        "--fetch-url",
        default="",
        metavar="URL",
        help="URL `process_data` fetches when the payload has no url",
    )
    add(
        "--fetch-allow",
        type=_allow_list,
        action=_ListAction,
        default=[],
        metavar="HOSTS",
        help="hosts, IP addresses or CIDR networks (127.0.0.1, 10.0.0.0/8, internal.example) "
        "that `bar` and `process_data` may fetch besides the public internet; repeatable or "
        "comma-separated (default: public addresses only)",
    )
    add(
        "--fetch-max-bytes",
        type=_int_range(1, MAX_FETCH_BYTES),
        default=DEFAULT_FETCH_MAX_BYTES,
        metavar="BYTES",
        help="largest response body `process_data` reads; a larger one fails the task",
    )
    add(
        "--outbox-dir",
        type=_non_empty,
        default="./outbox",
        metavar="DIR",
        help="where send_email writes .eml files when no SMTP host is set",
    )
    add(
        "--reports-dir",
        type=_non_empty,
        default="./reports",
        metavar="DIR",
        help="where generate_report writes its reports",
    )
    add(
        "--smtp-host",
        default="",
        metavar="HOST",
        help="SMTP relay for send_email (empty: use the outbox)",
    )
    add(
        "--smtp-port", type=_int_range(1, 65535), default=25, metavar="PORT", help="SMTP relay port"
    )
    add(
        "--smtp-from",
        type=_non_empty,
        default="orchestrator@localhost",
        metavar="ADDRESS",
        help="the From address of send_email",
    )
    add(
        "--foo-seconds",
        type=_float_range(0, 86_400),
        default=3.0,
        metavar="SECONDS",
        help="how long the `foo` task type sleeps",
    )
    add = parser.add_argument_group("security (see the README's Security section)").add_argument
    add(
        "--token",
        default="",
        metavar="TOKEN",
        help="bearer token (role worker) for a scheduler with authentication on; prefer the "
        "variable (a command line is visible to other users); without TLS, loopback only",
    )
    add("--tls", action="store_true", help="TLS with the system's trusted roots")
    add(
        "--tls-ca", default="", metavar="PEM", help="trust the scheduler's certificate from this CA"
    )
    add(
        "--tls-cert",
        default="",
        metavar="PEM",
        help="client certificate for mutual TLS; its CN becomes this worker's id",
    )
    add("--tls-key", default="", metavar="PEM", help="the --tls-cert's private key")
    add(
        "--tls-server-name",
        default="",
        metavar="NAME",
        help="the name the scheduler's certificate must carry, if not the address's host",
    )
    add = parser.add_argument_group("logging").add_argument
    add("--log-level", choices=LOG_LEVELS, default="info", help="least severe level logged")
    add("--log-format", choices=LOG_FORMATS, default="text", help="log line format")
    add_tracing_options(
        parser.add_argument_group("tracing"), service_name=WorkerConfig.service_name
    )
    return parser


class _ListAction(argparse.Action):
    """Accumulate comma lists over repeated flags; the first flag on the command line
    replaces the value from the environment instead of adding to it (flags win)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest)
        if current is self.default:
            current = []
        setattr(namespace, self.dest, [*current, *values])


def _tls(args: argparse.Namespace) -> TlsConfig | None:
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    for flag, path in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert)):
        if path and not Path(path).is_file():
            raise ValueError(f"{flag} {path}: no such file")
    if args.tls_key and not Path(args.tls_key).is_file():
        raise ValueError(f"--tls-key {args.tls_key}: no such file")
    try:
        return TlsConfig(
            ca_file=args.tls_ca or None,
            cert_file=args.tls_cert or None,
            key_file=args.tls_key or None,
            server_name=args.tls_server_name or None,
        )
    except ValueError as exc:
        raise ValueError(f"--tls-cert/--tls-key: {exc}") from None


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _allow_list(text: str) -> list[str]:
    entries = _comma_list(text)
    for entry in entries:
        try:
            parse_allow_entry(entry)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return entries


def address_list(text: str) -> list[str]:
    """``host:port[,host:port...]``: every entry needs a non-empty host and a port 1-65535
    (``[::1]:50051`` for IPv6); an empty entry (``a:1,,b:2``, a trailing comma) is an error."""
    entries = [part.strip() for part in text.split(",")]
    if entries == [""]:
        raise argparse.ArgumentTypeError("must not be empty")
    for number, entry in enumerate(entries, 1):
        if not entry:
            raise argparse.ArgumentTypeError(
                f"entry {number} of {len(entries)} is empty, expected host:port"
            )
        host, _, port = entry.rpartition(":")
        valid_port = port.isascii() and port.isdigit() and 1 <= int(port) <= 65535
        if not host or host == "[]" or not valid_port:
            raise argparse.ArgumentTypeError(f"{entry!r} is not host:port (port 1 to 65535)")
    return entries


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def _worker_id(text: str) -> str:
    if not 1 <= len(text) <= MAX_WORKER_ID or text != text.strip():
        raise argparse.ArgumentTypeError(
            f"must be 1 to {MAX_WORKER_ID} characters without surrounding spaces, got {text!r}"
        )
    return text


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value

    return parse
