"""Python client for task-orchestrator."""
