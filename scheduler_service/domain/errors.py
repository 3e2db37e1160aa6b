"""Errors of the scheduling domain.

The gRPC layer maps each class to one status code in a single table
(``scheduler_service.api.errors``); nothing below it knows about status codes::

    SchedulerError
    ├── InvalidArgument        a request field is malformed or out of range
    ├── NotFound               no task (or type) with that id
    ├── AlreadyExists
    ├── FailedPrecondition     the task is not in a state that allows this
    │   └── StaleLease         a result for a lease that is no longer current
    ├── ResourceExhausted      a limit on sizes or counts was hit (or the disk is full)
    └── Unavailable            the database cannot be written right now; retry
"""

from __future__ import annotations


class SchedulerError(Exception):
    """The scheduler could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or type(self).__name__)

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidArgument(SchedulerError):
    """A request field is malformed or out of range."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class NotFound(SchedulerError):
    """Nothing with that id exists."""


class AlreadyExists(SchedulerError):
    """That already exists."""


class FailedPrecondition(SchedulerError):
    """The task is not in a state that allows this."""


class StaleLease(FailedPrecondition):
    """The lease is no longer current: its result is refused and changes nothing."""


class ResourceExhausted(SchedulerError):
    """A limit on sizes or counts was hit."""


class Unavailable(SchedulerError):
    """The scheduler cannot do this right now; retrying later may work."""
