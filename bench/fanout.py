"""Workload E, fan-out: many worker streams on one scheduler, tasks arriving steadily.

``streams`` worker streams in ``processes`` load-client processes
(:mod:`tests.support.load_workers`: the real protocol on every stream, each lease completed
at once), and a producer creating ``rate`` tasks a second for ``seconds``, the tasks due by
each 10 ms tick in one ``BatchCreateTasks`` call, the way a busy service sends them.

Dispatch latency is a lease's arrival at its load client minus its task's ``created_at``
(one host's wall clock). The scheduler's CPU is measured over the producing window, as a
share of one core.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from bench.figures import Figures, percentile
from bench.processes import Process, wait_until

TYPE = "bench_fanout"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _produce(target: str, rate: int, seconds: float) -> int:
    from orchestrator_client import AsyncClient

    total = int(rate * seconds)
    made = 0
    async with AsyncClient(target) as client:
        calls: list[asyncio.Task[object]] = []
        start = time.monotonic()
        while made < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            if due > made:
                now = time.time()
                specs = [{"type": TYPE, "payload": {"created": now}} for _ in range(due - made)]
                calls.append(asyncio.create_task(client.batch_create_tasks(specs)))
                made = due
            await asyncio.sleep(0.01)  # the producer's pacing tick
        await asyncio.gather(*calls)
    return made


async def _unfinished(target: str) -> int:
    from orchestrator_client import AsyncClient

    async with AsyncClient(target) as client:
        types = (await client.list_task_types()).task_types
    return sum(
        t.counts.scheduled + t.counts.pending + t.counts.running for t in types if t.name == TYPE
    )


def fanout(
    target: str,
    scheduler_pid: int,
    workdir: Path,
    *,
    streams: int,
    processes: int,
    rate: int,
    seconds: float,
) -> Figures:
    clients: list[tuple[Process, Path]] = []
    per = streams // processes
    try:
        for n in range(processes):
            out = workdir / f"fanout-{n}.json"
            out.unlink(missing_ok=True)
            process = Process(
                f"fanout-load{n}",
                [
                    sys.executable, "-m", "tests.support.load_workers",
                    "--target", target,
                    "--streams", str(per),
                    "--slots", "4",
                    "--type", TYPE,
                    "--out", str(out),
                ],
                workdir,
            )  # fmt: skip
            clients.append((process, out))

        def welcomed() -> bool:
            for process, _ in clients:
                if not process.running:
                    raise RuntimeError(f"{process.name} exited:\n{process.output()[-2000:]}")
            return all(f"ready {per}" in process.output() for process, _ in clients)

        wait_until(welcomed, 120, f"{streams} streams welcomed")
        cpu_before = cpu_seconds(scheduler_pid)
        started = time.monotonic()
        made = asyncio.run(_produce(target, rate, seconds))
        window = time.monotonic() - started
        cpu = cpu_seconds(scheduler_pid) - cpu_before
        wait_until(lambda: asyncio.run(_unfinished(target)) == 0, 120, "fan-out tasks finished")
    finally:
        for process, _ in clients:
            process.stop()
    latencies: list[float] = []
    leases = 0
    for process, out in clients:
        if not out.exists():
            raise RuntimeError(f"{process.name} wrote no summary:\n{process.output()[-2000:]}")
        summary = json.loads(out.read_text())
        latencies.extend(summary["latencies_ms"])
        leases += summary["leases"]
    figures = Figures()
    figures["streams"] = per * processes
    figures["tasks/s"] = made / window
    figures["p50 ms"] = percentile(latencies, 0.5)
    figures["p99 ms"] = percentile(latencies, 0.99)
    figures["scheduler CPU %"] = 100 * cpu / window
    figures["scheduler RSS MiB"] = peak_rss_mib(scheduler_pid)
    if leases < made:
        figures.notes.append(f"only {leases} of {made} tasks were leased to the load clients")
    return figures
