"""The public surface of ``orchestrator_client`` is exactly what ``__all__`` promises.

Adding a name is a decision (it becomes API); removing one breaks users. Either change must
show up here, in review.
"""

from __future__ import annotations

import orchestrator_client

EXPECTED = {
    "DEFAULT_SCHEDULER_ADDRESS",
    "TERMINAL_STATES",
    "AlreadyExists",
    "AsyncClient",
    "Backoff",
    "CatchUp",
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OnFailure",
    "OrchestratorError",
    "PermissionDenied",
    "RPCError",
    "ReasonCode",
    "ResourceExhausted",
    "RetryPolicy",
    "Schedule",
    "ScheduleState",
    "Task",
    "TaskEvent",
    "TaskState",
    "TlsConfig",
    "Unauthenticated",
    "Unavailable",
    "WatchEnded",
    "__version__",
    "parse_state",
    "state_name",
}


def test_all_is_pinned() -> None:
    assert set(orchestrator_client.__all__) == EXPECTED
    assert len(orchestrator_client.__all__) == len(EXPECTED), "duplicates in __all__"


def test_every_exported_name_exists() -> None:
    for name in orchestrator_client.__all__:
        assert hasattr(orchestrator_client, name), name


def test_exported_classes_claim_the_public_module() -> None:
    # Private modules stay private: nothing public should point users at `_client` & co.
    for name in orchestrator_client.__all__:
        member = getattr(orchestrator_client, name)
        module = getattr(member, "__module__", "")
        if isinstance(member, type) and module.startswith("orchestrator_client"):
            assert module == "orchestrator_client", f"{name} is in {module}"


def test_reexported_enums_are_the_contracts() -> None:
    # The enums people pass (on_failure=) or compare (reason.code ==) are the generated ones.
    from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2

    assert orchestrator_client.OnFailure is task_pb2.OnFailure
    assert orchestrator_client.ReasonCode is task_service_pb2.ReasonCode
    assert orchestrator_client.CatchUp is admin_service_pb2.CatchUp
    assert orchestrator_client.ScheduleState is admin_service_pb2.ScheduleState
    assert orchestrator_client.Schedule is admin_service_pb2.Schedule
    assert orchestrator_client.CatchUp.Value("CATCH_UP_ALL") == admin_service_pb2.CATCH_UP_ALL
    assert orchestrator_client.OnFailure.Value("ON_FAILURE_SKIP") == task_pb2.ON_FAILURE_SKIP
