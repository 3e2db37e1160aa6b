"""The installed distribution's version, for ``taskctl --version`` and bug reports."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("task-orchestrator")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
