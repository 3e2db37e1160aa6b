"""Dramatiq on Redis: the actor its workers load (``dramatiq bench.peers.dramatiq_app``)."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.starts import record

dramatiq.set_broker(RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")))


@dramatiq.actor(max_retries=0)
def noop(created: float, due: float = 0.0) -> None:
    record(created, due)
