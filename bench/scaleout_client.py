"""One client process of workload F (:mod:`bench.scaleout`): creates its share of the tasks,
its calls spread round-robin over every replica it is given.

    python -m bench.scaleout_client --targets HOST:PORT[,HOST:PORT...] --tasks N \\
        --inflight 64 --batch 0 --go FILE --out FILE.json

It connects to every replica first and prints ``ready``; it starts creating when ``--go``
appears (so that all clients start together, after their imports and connections), and
writes the wall-clock times of its first call and last acknowledgement, and the CPU it used
while creating, to ``--out``. ``--batch 0`` is one ``CreateTask`` per task with up to
``--inflight`` calls at once (A1's way); ``--batch 1000`` is ``BatchCreateTasks`` of that
many, one call in flight per replica (A2's way, each replica taking its share at once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path

TYPE = "bench_noop"


def _wait_for(go: Path) -> None:
    """Until the start signal: every client begins at once, within a millisecond."""
    while not go.exists():
        time.sleep(0.001)


async def _create(
    targets: list[str], tasks: int, inflight: int, batch: int, go: Path
) -> dict[str, float]:
    from orchestrator_client import AsyncClient

    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(AsyncClient(t)) for t in targets]
        for client in clients:
            await client.list_task_types()  # the channel is up before the clock starts
        print("ready", flush=True)
        await asyncio.to_thread(_wait_for, go)
        cpu_before = time.process_time()
        first = time.time()
        last = first
        if batch:
            sizes = [min(batch, tasks - start) for start in range(0, tasks, batch)]

            async def replica(index: int) -> None:
                nonlocal last
                for size in sizes[index :: len(clients)]:
                    now = time.time()
                    specs = ({"type": TYPE, "payload": {"created": now}} for _ in range(size))
                    await clients[index].batch_create_tasks(specs)
                    last = max(last, time.time())

            await asyncio.gather(*(replica(i) for i in range(len(clients))))
        else:
            gate = asyncio.Semaphore(inflight)

            async def one(index: int) -> None:
                nonlocal last
                async with gate:
                    client = clients[index % len(clients)]
                    await client.create_task(TYPE, {"created": time.time()})
                    last = max(last, time.time())

            await asyncio.gather(*(one(i) for i in range(tasks)))
        return {"first": first, "last": last, "cpu": time.process_time() - cpu_before}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout_client")
    parser.add_argument("--targets", required=True, help="replica addresses, comma-separated")
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--batch", type=int, default=0, help="0: one call per task")
    parser.add_argument("--go", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not targets:
        parser.error("--targets: no address given")
    result = asyncio.run(_create(targets, args.tasks, args.inflight, args.batch, args.go))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
