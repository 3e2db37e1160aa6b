"""``taskctl``: the command line of task-orchestrator.

``main`` is the edge: it reads the environment and the standard streams, runs one command
on an :class:`~orchestrator_client.AsyncClient`, and turns every outcome into an exit status
(see ``_exit.ExitCode``) in one place.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence

from .._client import AsyncClient
from .._errors import OrchestratorError, Unavailable
from ..channel import TlsConfig
from ._batch import batch
from ._commands import COMMANDS, Command, Context, ask
from ._completion import command_tree
from ._completion import script as shell_script
from ._exit import ExitCode, UsageError
from ._output import Output
from ._parser import COMPLETION_HINTS, build_parser

__all__ = ["ExitCode", "main"]

_COMMANDS: dict[str, Command] = {**COMMANDS, "batch": batch}


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None) -> int:
    """Run ``taskctl`` with ``argv`` (default ``sys.argv[1:]``); answer the exit status."""
    try:
        # Building reads the environment, so a bad variable is a usage error as well.
        args = build_parser(os.environ if environ is None else environ).parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    if args.command == "completion":  # needs no scheduler: answered before any connection
        sys.stdout.write(completion_script(args.shell, build_parser({})))
        return ExitCode.OK
    json_mode = not sys.stdout.isatty() if args.json is None else bool(args.json)
    out = Output(json_mode=json_mode, stdout=sys.stdout, stderr=sys.stderr)
    try:
        return asyncio.run(_run(args, out, interactive=sys.stdin.isatty()))
    except KeyboardInterrupt:
        out.error("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # `taskctl list | head -1`: the reader left, which is not our error. Point stdout at
        # /dev/null so that the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK


def completion_script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script of ``shell`` for this parser's commands and flags."""
    return shell_script(shell, command_tree(parser, COMPLETION_HINTS))


def tls_config(args: argparse.Namespace) -> TlsConfig | None:
    """TLS from the ``--tls*`` options, or None for an insecure channel (ValueError when a
    certificate comes without its key)."""
    files = (args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    if not (args.tls or any(files)):
        return None
    return TlsConfig(
        ca_file=args.tls_ca or None,
        cert_file=args.tls_cert or None,
        key_file=args.tls_key or None,
        server_name=args.tls_server_name or None,
    )


async def _run(args: argparse.Namespace, out: Output, *, interactive: bool) -> int:
    scheduler: str = args.scheduler
    try:
        tls = tls_config(args)
    except ValueError as error:
        out.error(f"--tls-cert/--tls-key: {error}")
        return ExitCode.USAGE
    client = AsyncClient(
        scheduler,
        client_id=args.client_id or None,
        timeout=args.rpc_timeout,
        token=args.token or None,
        tls=tls,
    )
    ctx = Context(client=client, out=out, confirm=ask if interactive else None)
    command = _COMMANDS[args.command]
    async with client:
        try:
            return await command(ctx, args)
        except Unavailable as error:
            out.error(f"{error} (is a scheduler listening at {scheduler}?)")
            return ExitCode.UNREACHABLE
        except OrchestratorError as error:
            out.error(str(error))
            return ExitCode.RPC_ERROR
        except (UsageError, ValueError) as error:
            out.error(str(error))
            return ExitCode.USAGE
