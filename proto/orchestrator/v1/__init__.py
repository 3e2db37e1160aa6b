"""Generated protobuf and gRPC code for the ``orchestrator.v1`` contract.

Everything in this package except this file is written by ``python scripts/gen_protos.py``;
never edit it by hand.
"""
