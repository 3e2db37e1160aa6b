"""Python client for task-orchestrator.

    import orchestrator_client as oc

    async with oc.AsyncClient("127.0.0.1:50051", client_id="billing") as client:
        task = await client.create_task("sum2", {"first": 1, "second": 2}, idempotency_key="k1")
        done = await client.wait_for_task(task.id)

:class:`Client` is the blocking twin. Methods answer the contract's protobuf messages
(``orchestrator.v1.task_pb2.Task`` …; ``Task``, ``TaskEvent``, ``Schedule`` and the enums people
pass or compare, ``TaskState``, ``OnFailure``, ``ReasonCode``, ``CatchUp`` and ``ScheduleState``,
are re-exported here) and raise the typed errors of the :class:`OrchestratorError` tree.
"""

from orchestrator.v1.admin_service_pb2 import CatchUp, Schedule, ScheduleState
from orchestrator.v1.task_pb2 import OnFailure, Task, TaskState
from orchestrator.v1.task_service_pb2 import ReasonCode, TaskEvent

from ._client import AsyncClient
from ._errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OrchestratorError,
    PermissionDenied,
    ResourceExhausted,
    RPCError,
    Unauthenticated,
    Unavailable,
    WatchEnded,
)
from ._requests import Backoff
from ._retry import RetryPolicy
from ._states import TERMINAL_STATES, parse_state, state_name
from ._sync import Client
from ._version import __version__
from .channel import TlsConfig
from .protocol import DEFAULT_SCHEDULER_ADDRESS

__all__ = [
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
]


def _claim_public_module() -> None:
    # Tracebacks and reprs then say `orchestrator_client.NotFound`, the name users import,
    # rather than a private module that may move (httpx does the same).
    namespace = globals()
    for name in __all__:
        member = namespace[name]
        if getattr(member, "__module__", "").startswith(__name__ + "."):
            member.__module__ = __name__


_claim_public_module()
