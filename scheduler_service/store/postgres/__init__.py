"""The PostgreSQL store (issue 8): several scheduler replicas, on many hosts, on one server.

Selected by a ``postgresql://`` database URL; asyncpg is the optional ``postgres`` extra.
"""
