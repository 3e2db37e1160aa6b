"""The scheduling engine: dispatching leases, reclaiming them, feeding watchers.

Plain asyncio classes over the store interface; they know nothing of gRPC. The gRPC
servicers translate wire messages into calls on these and back.
"""
