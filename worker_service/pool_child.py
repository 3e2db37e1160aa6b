"""The process pool's children ignore SIGINT and SIGTERM (a small module: each spawned
child imports it).

A Ctrl-C in a terminal, or a service manager that signals the whole process group, would
otherwise kill them mid-task and break the pool, while the worker itself is shutting down
gracefully and wants those tasks to finish. The worker ends the children itself when it
leaves (SIGKILL, see ``Executors.shutdown``).

A child is born with the two signals *blocked* (:func:`signals_blocked` around the start of
the process; the mask survives ``exec``), and ignores them before unblocking, so that there
is no moment in its start-up when a signal would kill it. Blocking them in the worker's own
thread for that instant loses nothing: the kernel delivers them to another thread, and
Python runs the handler in the main thread as usual.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

SHUTDOWN_SIGNALS = {signal.SIGINT, signal.SIGTERM}


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
