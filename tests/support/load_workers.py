"""A load client: many ``WorkerService.Connect`` streams from one asyncio process.

``orchestrator-worker --slots`` runs more tasks on one stream; a load test needs many
streams, which real worker processes would need one process each for. This client speaks
the real protocol on every stream — hello, welcome, leases, results carrying the credit
back, heartbeats at the interval the welcome asks — and completes every lease at once
(``SUCCEEDED``, result ``{}``), recording when each lease arrived.

Run it as a process::

    python -m tests.support.load_workers --target 127.0.0.1:50051 --streams 200 \\
        --type load --out summary.json

It prints ``ready N`` once all N streams are welcomed, and on SIGTERM (or SIGINT) half-closes
every stream, waits briefly for the scheduler to end them, and writes ``--out``: a JSON
object with ``latencies_ms`` (each lease's arrival minus its task's ``created_at``, both on
this host's wall clock), ``leases``, ``refused`` (results the scheduler refused),
``cancels``, ``streams`` and ``errors``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator.v1 import worker_service_pb2_grpc as pb_grpc
from orchestrator_client.channel import channel_options
from orchestrator_client.protocol import WORKER_PROTOCOL_VERSION

#: Streams per channel (one HTTP/2 connection each; the scheduler allows 1000 per connection).
STREAMS_PER_CHANNEL = 100
HEARTBEAT_MARGIN = 0.8


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    leases: int = 0
    refused: int = 0
    cancels: int = 0
    welcomed: int = 0
    errors: list[str] = field(default_factory=list)


class LoadStream:
    def __init__(
        self, channel: grpc.aio.Channel, worker_id: str, task_type: str, slots: int, tally: Tally
    ) -> None:
        self._stub = pb_grpc.WorkerServiceStub(channel)
        self._worker_id = worker_id
        self._type = task_type
        self._slots = slots
        self._tally = tally
        self._lock = asyncio.Lock()  # gRPC allows one write at a time
        self._call: Any = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.welcomed = asyncio.Event()

    async def _send(self, message: pb.WorkerMessage) -> None:
        async with self._lock:
            await self._call.write(message)

    async def run(self) -> None:
        self._call = self._stub.Connect()
        hello = pb.WorkerHello(
            protocol_version=WORKER_PROTOCOL_VERSION,
            worker_id=self._worker_id,
            task_types=[self._type],
            slots=self._slots,
            hostname="load",
            pid=0,
            version="load",
        )
        await self._send(pb.WorkerMessage(hello=hello))
        first = await self._call.read()
        if not isinstance(first, pb.SchedulerMessage) or not first.HasField("welcome"):
            raise RuntimeError(f"expected a welcome, got {first!r}")
        interval = first.welcome.heartbeat_interval
        period = (interval.seconds + interval.nanos / 1e9 or 5.0) * HEARTBEAT_MARGIN
        self._heartbeat = asyncio.create_task(self._beat(period))
        self._tally.welcomed += 1
        self.welcomed.set()
        while True:
            message = await self._call.read()
            if not isinstance(message, pb.SchedulerMessage):  # EOF: the scheduler ended it
                return
            kind = message.WhichOneof("message")
            if kind == "leases":
                await self._complete(message.leases.leases)
            elif kind == "acks":
                self._tally.refused += sum(1 for a in message.acks.acks if not a.accepted)
            elif kind == "cancel":
                self._tally.cancels += len(message.cancel.lease_ids)

    async def _complete(self, leases: Any) -> None:
        arrived = time.time()
        results = []
        for lease in leases:
            created = lease.created_at.seconds + lease.created_at.nanos / 1e9
            self._tally.latencies_ms.append((arrived - created) * 1000)
            result = pb.TaskResult(
                lease_id=lease.lease_id,
                task_id=lease.task_id,
                outcome=pb.RESULT_OUTCOME_SUCCEEDED,
                result_json=b"{}",
            )
            result.started_at.FromNanoseconds(int(arrived * 1e9))
            results.append(result)
        self._tally.leases += len(results)
        batch = pb.ResultBatch(results=results, credit=len(results))
        await self._send(pb.WorkerMessage(results=batch))

    async def _beat(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)  # the heartbeat timer
            await self._send(pb.WorkerMessage(heartbeat=pb.Heartbeat()))

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._call is not None and not self._call.done():
            async with self._lock:
                await self._call.done_writing()


async def run(args: argparse.Namespace) -> int:
    tally = Tally()
    channels = [
        grpc.aio.insecure_channel(
            args.target, options=[*channel_options(), ("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range((args.streams + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
    ]
    streams = [
        LoadStream(channels[i // STREAMS_PER_CHANNEL], f"load-{i}", args.type, args.slots, tally)
        for i in range(args.streams)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runners = [asyncio.create_task(s.run()) for s in streams]

    async def announce() -> None:
        await asyncio.gather(*(s.welcomed.wait() for s in streams))
        print(f"ready {len(streams)}", flush=True)

    announcer = asyncio.create_task(announce())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([stopper, *runners], return_when=asyncio.FIRST_COMPLETED)
    if not stop.is_set():  # a stream ended before it was asked to: that is an error
        tally.errors.extend(
            repr(r.exception()) if r.exception() else "a stream ended early"
            for r in runners
            if r.done() and not r.cancelled()
        )
    announcer.cancel()
    await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)
    _, pending = await asyncio.wait(runners, timeout=5)
    for runner in pending:
        runner.cancel()
    for runner in runners:
        if runner.done() and not runner.cancelled() and runner.exception() is not None:
            error = repr(runner.exception())
            if error not in tally.errors:
                tally.errors.append(error)
    for channel in channels:
        await channel.close()
    summary = {
        "latencies_ms": tally.latencies_ms,
        "leases": tally.leases,
        "refused": tally.refused,
        "cancels": tally.cancels,
        "streams": tally.welcomed,
        "errors": tally.errors[:20],
    }
    Path(args.out).write_text(json.dumps(summary))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="the scheduler's host:port")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--slots", type=int, default=4, help="credit per stream")
    parser.add_argument("--type", default="load", help="the task type every stream serves")
    parser.add_argument("--out", required=True, help="where to write the JSON summary")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
