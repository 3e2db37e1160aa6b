"""Scheduling rules and the task model, in plain Python: no gRPC, no SQL."""
