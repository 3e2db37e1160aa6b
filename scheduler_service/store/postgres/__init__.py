"""The PostgreSQL store (issue 8): several scheduler replicas, on many hosts, on one server.

Selected by a ``postgresql://`` database URL once it implements the whole store interface;
until then it is exercised by its own tests only (see the README's "Not yet").
"""
