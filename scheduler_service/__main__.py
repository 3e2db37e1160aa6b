"""``orchestrator-scheduler`` / ``python -m scheduler_service``: the only place signals
are handled."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from orchestrator_client.logs import configure_logging
from orchestrator_client.tracing import TracingUnavailable

from .app import SchedulerApp
from .config import SchedulerConfig
from .maintenance import is_command, run_command
from .store.errors import DatabaseUnusable


async def _serve(config: SchedulerConfig) -> None:
    app = SchedulerApp(config)
    loop = asyncio.get_running_loop()
    signals = 0
    stopping: list[asyncio.Task[None]] = []  # holds the stop task so it is not collected early

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # a second signal: stop waiting for the drain
            os._exit(1)
        stopping.append(loop.create_task(app.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await app.run()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if is_command(arguments):  # `migrate` or `copy`: run once, no servers
        return run_command(arguments, os.environ)
    config = SchedulerConfig.from_args(arguments, os.environ)
    configure_logging(config.log_level, config.log_format)
    try:
        asyncio.run(_serve(config))
    except (OSError, DatabaseUnusable, TracingUnavailable) as exc:
        print(f"orchestrator-scheduler: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
