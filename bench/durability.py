"""What ``--sqlite-synchronous FULL`` (the default) costs against ``NORMAL``, measured.

Starts a real scheduler process per round on a fresh database (no workers), then creates
``--tasks`` tasks with ``--concurrency`` single ``CreateTask`` calls in flight at once, and
prints the create throughput of each setting and their ratio. Under FULL every commit
fsyncs the WAL before the creates it holds are answered; under NORMAL the WAL is synced only
at checkpoints, so the last commits before a power loss (not a process crash) may be lost.
Group commit puts many concurrent creates in one transaction, so the cost is per commit,
not per create.

    python bench/durability.py [--tasks 5000] [--concurrency 64] [--rounds 3] [--dir DIR]

Put ``--dir`` on the disk you care about: on tmpfs an fsync costs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from tests.support.processes import SchedulerProcess, scheduler_args
from tests.support.tasks import request

TYPE = "bench"


async def one_round(directory: Path, synchronous: str, tasks: int, concurrency: int) -> float:
    """Creates per second against one fresh scheduler with ``synchronous``."""
    import grpc

    from orchestrator.v1 import task_service_pb2_grpc

    directory.mkdir(parents=True)  # noqa: ASYNC240 - before anything runs
    args = scheduler_args(
        directory / "orchestrator.db",
        "--task-types", TYPE,
        "--sqlite-synchronous", synchronous,
        "--http-listen", "off",
    )  # fmt: skip
    scheduler = SchedulerProcess(f"scheduler-{synchronous}", args, directory, env=None)
    try:
        await scheduler.wait_ready()
        async with grpc.aio.insecure_channel(scheduler.grpc_address) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            for _ in range(concurrency):  # warm up: connection, statements, pages
                await stub.CreateTask(request(TYPE))
            remaining = tasks

            async def creator() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await stub.CreateTask(request(TYPE, {"n": remaining}), timeout=30)

            started = time.perf_counter()
            await asyncio.gather(*(creator() for _ in range(concurrency)))
            return tasks / (time.perf_counter() - started)
    finally:
        scheduler.terminate()


def fsync_median_ms(directory: Path, samples: int = 200) -> float:
    """The disk's cost of one commit's sync: median of appending 4 KiB and fsyncing."""
    probe = directory / "fsync-probe"
    times = []
    with probe.open("wb") as handle:
        for _ in range(samples):
            handle.write(b"x" * 4096)
            handle.flush()
            started = time.perf_counter()
            os.fsync(handle.fileno())
            times.append((time.perf_counter() - started) * 1000)
    probe.unlink()
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--dir", default="", help="where the databases go (default: a temp dir, removed after)"
    )
    args = parser.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="durability-"))
    try:
        await measure(base, args.tasks, args.concurrency, args.rounds)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


async def measure(base: Path, tasks: int, concurrency: int, rounds: int) -> None:
    print(
        f"{tasks} creates, {concurrency} concurrent, no workers, best and median "
        f"of {rounds} rounds each; databases under {base}"
    )
    print(f"this disk: append 4 KiB + fsync, median {fsync_median_ms(base):.2f} ms")
    results: dict[str, list[float]] = {"FULL": [], "NORMAL": []}
    for n in range(rounds):  # interleaved, so that a noisy moment hits both
        for synchronous in results:
            rate = await one_round(
                base / f"{synchronous.lower()}{n}", synchronous, tasks, concurrency
            )
            results[synchronous].append(rate)
            print(f"  round {n + 1} {synchronous:<6} {rate:8.0f} creates/s")
    best = {mode: max(rates) for mode, rates in results.items()}
    median = {mode: statistics.median(rates) for mode, rates in results.items()}
    for mode in results:
        print(f"{mode:<6} best {best[mode]:8.0f} creates/s   median {median[mode]:8.0f} creates/s")
    print(
        f"NORMAL / FULL: {best['NORMAL'] / best['FULL']:.2f}x (best), "
        f"{median['NORMAL'] / median['FULL']:.2f}x (median)"
    )


if __name__ == "__main__":
    asyncio.run(main())
