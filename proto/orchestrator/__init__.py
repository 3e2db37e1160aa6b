"""The task-orchestrator contract: generated code only (see ``orchestrator.v1``)."""
