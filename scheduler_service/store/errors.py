"""Errors of the stores that are no one backend's."""

from __future__ import annotations


class DatabaseUnusable(Exception):
    """The database cannot be opened for writing (read-only, missing folder, corrupt; or an
    unreachable server, a missing database, a refused login)."""
