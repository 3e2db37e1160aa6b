"""The one thing every benchmarked task does: write down when it started.

Every system's no-op task calls :func:`record` with the wall-clock time its client created
it (``created``) and the time it was due (``due``, 0 when due at once). Each process and
thread appends lines to its own file under ``$BENCH_STARTS_DIR`` (no lock, no shared file),
and :func:`read_starts` collects them after the run. Wall clock on one host, so start minus
create is a latency every system is measured by alike.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

ENV = "BENCH_STARTS_DIR"
_files = threading.local()


def record(created: float, due: float = 0.0) -> None:
    started = time.time()
    out: TextIO | None = getattr(_files, "out", None)
    if out is None:
        directory = os.environ[ENV]
        name = f"{os.getpid()}-{threading.get_ident()}.txt"
        out = open(Path(directory) / name, "a", buffering=1)  # noqa: SIM115 - kept open
        _files.out = out
    out.write(f"{started!r} {created!r} {due!r}\n")


@dataclass(frozen=True)
class Start:
    started: float
    created: float
    due: float


def read_starts(directory: Path) -> list[Start]:
    starts = []
    for path in directory.glob("*.txt"):
        for line in path.read_text().splitlines():
            started, created, due = (float(x) for x in line.split())
            starts.append(Start(started, created, due))
    return starts
