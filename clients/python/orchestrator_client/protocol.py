"""Constants of the wire protocol that every side must agree on."""

from __future__ import annotations

#: The version of the WorkerService.Connect protocol described in
#: ``proto/orchestrator/v1/worker_service.proto``. The scheduler refuses a worker whose
#: hello carries another version with FAILED_PRECONDITION.
WORKER_PROTOCOL_VERSION = 1

#: Where workers and ``taskctl`` find the scheduler unless told otherwise.
DEFAULT_SCHEDULER_ADDRESS = "127.0.0.1:50051"

#: gRPC metadata key naming the calling client; stored on created tasks as ``client``.
CLIENT_METADATA_KEY = "orchestrator-client"

#: What a task type name looks like (checked by the scheduler and by workers alike): a
#: letter, then up to 127 letters, digits, ``_``, ``.`` or ``-``.
TASK_TYPE_PATTERN = r"[A-Za-z][A-Za-z0-9_.\-]{0,127}"

#: Largest gRPC message either side sends or accepts (payloads, results, batches).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
