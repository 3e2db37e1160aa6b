"""What runs in the process pool's children (a small module: each spawned child imports it):
they ignore SIGINT and SIGTERM, and report when each handler really started.

A Ctrl-C in a terminal, or a service manager that signals the whole process group, would
otherwise kill them mid-task and break the pool, while the worker itself is shutting down
gracefully and wants those tasks to finish. The worker ends the children itself when it
leaves (SIGKILL, see ``Executors.shutdown``).

A child is born with the two signals *blocked* (:func:`signals_blocked` around the start of
the process; the mask survives ``exec``), and ignores them before unblocking, so that there
is no moment in its start-up when a signal would kill it. Blocking them in the worker's own
thread for that instant loses nothing: the kernel delivers them to another thread, and
Python runs the handler in the main thread as usual.

:func:`call_timed` wraps each cpu-bound handler call, so that ``TaskResult.started_at`` is
when the child started the handler, not when the job was queued for the pool.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

SHUTDOWN_SIGNALS = {signal.SIGINT, signal.SIGTERM}
#: Set by :func:`call_timed` on an exception a handler raised: when the handler started.
STARTED_AT_ATTRIBUTE = "_orchestrator_started_at"


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread (and the processes it starts) for a moment."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_shutdown_signals() -> None:
    """The pool's initializer: ignore, then unblock (a pending signal is discarded)."""
    for signum in SHUTDOWN_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SHUTDOWN_SIGNALS)


def call_timed(func: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """``(start, func(*args))``, ``start`` being this process's wall clock (``time.time()``)
    right before the call. An exception leaves with the start as an attribute
    (:data:`STARTED_AT_ATTRIBUTE`; an exception pickles its ``__dict__``), so that the parent
    learns it either way."""
    started = time.time()
    try:
        return started, func(*args)
    except BaseException as exc:
        with contextlib.suppress(Exception):  # an exception type without a __dict__
            setattr(exc, STARTED_AT_ATTRIBUTE, started)
        raise
