"""Celery on Redis: the app its workers load (``celery -A bench.peers.celery_app worker``)."""

from __future__ import annotations

import os

from celery import Celery

from bench.starts import record

url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=url)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)


@app.task(name="bench.noop")
def noop(created: float, due: float = 0.0) -> None:
    record(created, due)
