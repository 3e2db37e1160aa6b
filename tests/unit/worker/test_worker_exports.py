"""The handler API is what ``worker_service`` exports; pin it."""

from __future__ import annotations

import worker_service


def test_exports() -> None:
    assert worker_service.__all__ == [
        "HandlerSettings",
        "PermanentError",
        "TaskContext",
        "TaskFailed",
        "TaskInfo",
        "handler",
    ]
    for name in worker_service.__all__:
        assert getattr(worker_service, name) is not None


def test_permanent_error_is_a_task_failure() -> None:
    assert issubclass(worker_service.PermanentError, worker_service.TaskFailed)
    assert (
        str(worker_service.PermanentError())
        == "The task failed permanently and must not be retried."
    )
