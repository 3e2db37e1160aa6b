"""``orchestrator-worker`` / ``python -m worker_service``.

The only place that reads the process environment and handles signals: SIGTERM or SIGINT
stop the worker gracefully (finish or return what it runs, then leave); a second one exits
at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from orchestrator_client.logs import configure_logging
from orchestrator_client.tracing import TracingUnavailable

from .config import WorkerConfig
from .errors import RegistryError, SchedulerRejected
from .registry import HandlerRegistry
from .tracing import RunTracing
from .worker import Worker

log = logging.getLogger("worker_service")

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
#: What a process killed by SIGINT conventionally returns (128 + 2).
EXIT_HARD = 130


def build_registry(config: WorkerConfig) -> HandlerRegistry:
    """The built-ins plus ``--module``, narrowed to ``--task-types`` when given."""
    registry = HandlerRegistry.with_builtins()
    for module_name in config.modules:
        registry.add_module_name(module_name)
    if config.task_types:
        registry = registry.select(config.task_types)
    return registry


def describe_schedulers(addresses: Sequence[str]) -> str:
    """``scheduler a:1``, or ``schedulers a:1,b:2 (failover in this order)``."""
    if len(addresses) == 1:
        return f"scheduler {addresses[0]}"
    return f"schedulers {','.join(addresses)} (failover in this order)"


def main(argv: Sequence[str] | None = None) -> int:
    config = WorkerConfig.from_args(argv, os.environ)
    configure_logging(config.log_level, config.log_format)
    # Let `--module my_handlers` find a module in the current directory, as `python -m` would.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        registry = build_registry(config)
    except RegistryError as exc:
        print(f"orchestrator-worker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        tracing = RunTracing.from_config(config)
    except TracingUnavailable as exc:
        print(f"orchestrator-worker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    worker = Worker(config, registry, tracing=tracing)
    print(
        f"orchestrator-worker {config.worker_id}: {describe_schedulers(config.schedulers)}, "
        f"{config.slots} slots, types {', '.join(registry.names())}",
        flush=True,
    )
    try:
        code = asyncio.run(_serve(worker))
    except KeyboardInterrupt:  # a signal before the handlers were installed
        code = EXIT_HARD
    if tracing is not None:
        tracing.shutdown()  # exports the last spans, before a hard exit could lose them
    if worker.abandoned:
        # Threads and processes that cannot be stopped would hold the interpreter open.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


async def _serve(worker: Worker) -> int:
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        if stopping:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(EXIT_HARD)
        log.info("%s: stopping gracefully (again to exit now)", signal.Signals(signum).name)
        stopping.append(asyncio.create_task(worker.stop()))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await worker.run()
    except SchedulerRejected as exc:
        print(f"orchestrator-worker: the scheduler refused this worker: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
