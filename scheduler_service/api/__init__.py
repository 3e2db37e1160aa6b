"""The gRPC edge: thin servicers that decode, call the engine and encode.

This is the only place where exceptions become status codes (:mod:`.errors`).
"""
