"""Huey on SQLite: the app its consumer loads (``huey_consumer bench.peers.huey_app.huey``)."""

from __future__ import annotations

import os

from huey import SqliteHuey

from bench.starts import record

huey = SqliteHuey("bench", filename=os.environ.get("BENCH_HUEY_DB", "bench-huey.db"))


@huey.task()
def noop(created: float, due: float = 0.0) -> None:
    record(created, due)
