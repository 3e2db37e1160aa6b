"""Exceptions of the worker.

One base class, :class:`WorkerError`, whose docstring is the default message::

    WorkerError
    ├── TaskFailed            raised by a handler: the attempt failed, the message says why
    │   └── PermanentError    ... and retrying cannot help (bad input): not retryable
    ├── RegistryError         handlers declared wrongly (duplicate name, bad module, ...)
    └── SchedulerRejected     the scheduler refused this worker; retrying cannot help

A handler's ``TaskFailed`` becomes the task's error text as it is; any *other* exception is
a retryable failure reported as ``"ExceptionType: message"``. Only the handler knows that an
input can never succeed, so not-retryable has to be asked for explicitly.
"""

from __future__ import annotations


class WorkerError(Exception):
    """The worker failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else (self.__doc__ or "").strip())


class TaskFailed(WorkerError):
    """The task failed."""


class PermanentError(TaskFailed):
    """The task failed permanently and must not be retried."""


class RegistryError(WorkerError):
    """The task handlers are not declared correctly."""


class SchedulerRejected(WorkerError):
    """The scheduler refused this worker (e.g. protocol version mismatch)."""
