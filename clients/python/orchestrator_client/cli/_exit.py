"""``taskctl``'s exit statuses; scripts branch on them, so they never change meaning."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    #: The command did what was asked (``--wait``/``watch``: the task SUCCEEDED).
    OK = 0
    #: ``create --wait`` or ``watch``: the task ended FAILED or CANCELLED.
    TASK_UNSUCCESSFUL = 1
    #: Bad command line or arguments; nothing was sent (argparse uses 2 as well).
    USAGE = 2
    #: The scheduler answered with an error status (NOT_FOUND, INVALID_ARGUMENT, …).
    RPC_ERROR = 3
    #: The scheduler could not be reached (UNAVAILABLE after retries).
    UNREACHABLE = 4
    #: Interrupted with Ctrl-C (128 + SIGINT, as shells do).
    INTERRUPTED = 130


class UsageError(Exception):
    """A command line that parses but cannot be carried out as given (exit status 2)."""
