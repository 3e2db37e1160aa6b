"""Persistence behind one narrow async interface (:class:`~.base.TaskStore`)."""

from .base import TaskStore, sqlite_path

__all__ = ["TaskStore", "sqlite_path"]
