"""Workload F, scaling out: end-to-end throughput of one SQLite scheduler, one PostgreSQL
replica and three PostgreSQL replicas, in the same run.

Each deployment runs afresh for each way of creating (an empty database, new processes):

- **sqlite ×1**: one scheduler on a SQLite file (``FULL``: fsync per commit).
- **postgresql ×1** and **postgresql ×3**: replicas on one throw-away PostgreSQL server this
  bench starts (:class:`tests.support.postgres.PostgresServer`, ``durable``: fsync on), a
  fresh database each time.

The same :data:`WORKERS` worker processes (``--slots 64``) run the no-op task in every
deployment; each is given every replica's address, starting from a different one. Tasks
come from ``clients`` client processes (:mod:`bench.scaleout_client`), each spreading its
calls round-robin over every replica: one call per task with up to 64 in flight per client
(A1's way), or batches of 1,000, one in flight per replica per client (A2's way). The figure
is A1's and A2's: tasks over the time from the first create to the last start.

Everything shares one host, so beside each rate the CPU each part used over the window is
measured (a share of one core): the replicas, PostgreSQL's server processes, the workers,
the clients, and what the rest of the machine (other users) took.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.fanout import cpu_seconds
from bench.figures import Figures
from bench.processes import Process, free_port, wait_until
from bench.starts import read_starts
from bench.systems import ORCHESTRATOR_SLOTS, WORKERS
from tests.support.postgres import PostgresServer, find_binaries


@dataclass(frozen=True)
class Deployment:
    key: str
    label: str
    replicas: int
    postgres: bool


DEPLOYMENTS = (
    Deployment("sqlite1", "SQLite, 1 scheduler", 1, postgres=False),
    Deployment("pg1", "PostgreSQL, 1 replica", 1, postgres=True),
    Deployment("pg3", "PostgreSQL, 3 replicas", 3, postgres=True),
)
#: How tasks are created: the name in the figures, the batch size (0: one call per task).
MODES = (("single", 0), ("bulk", 1000))
#: The parts whose CPU is measured, in the table's order.
PARTS = ("replicas", "postgres", "workers", "clients", "others")


def postgres_binaries() -> Path:
    """The server binaries; Debian's ``postgresql`` installed on first use (like Redis)."""
    found = find_binaries()
    if found is None or not (found / "pg_ctl").exists():
        print("PostgreSQL is missing: installing Debian's package (apt-get)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True)
        found = find_binaries()
    if found is None:
        raise FileNotFoundError("apt-get install postgresql did not provide initdb/pg_ctl")
    return found


def _postgres_pids(server: PostgresServer) -> list[int]:
    """The postmaster and its children (a backend per connection, the WAL writer, ...)."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended meanwhile
        if int(fields[1]) == postmaster:
            pids.append(int(Path(stat).parent.name))
    return pids


def _cpu(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        try:
            seconds[pid] = cpu_seconds(pid)
        except OSError:
            continue  # ended: a backend whose connection closed
    return seconds


def _machine_busy() -> float:
    """CPU seconds every core of the host has been busy (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


#: What a replica's PostgreSQL connection is doing, as ``pg_stat_activity`` shows it.
WAITS = ("lock wait", "in transaction, idle", "in transaction, working", "WAL flush")
_ACTIVITY = """
SELECT state, wait_event_type, wait_event FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


class ActivitySampler:
    """Samples what the replicas' connections are doing every 20 ms, on a thread: the mean
    number of connections waiting for a lock (the revision row: every write transaction of
    every replica takes it), holding a transaction open while its replica prepares the next
    statement, executing one, or waiting for the WAL to reach the disk."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.samples = 0
        self.counts = dict.fromkeys(WAITS, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            while not self._stop.is_set():
                for row in await conn.fetch(_ACTIVITY):
                    kind = self._classify(row["state"], row["wait_event_type"], row["wait_event"])
                    if kind is not None:
                        self.counts[kind] += 1
                self.samples += 1
                await asyncio.sleep(0.02)  # the sampling period
        finally:
            await conn.close()

    @staticmethod
    def _classify(state: str | None, wait_type: str | None, wait: str | None) -> str | None:
        if wait_type == "Lock":
            return "lock wait"
        if wait_type == "IO" and wait in {"WALSync", "WALWrite", "WALInitSync"}:
            return "WAL flush"
        if state == "idle in transaction":
            return "in transaction, idle"
        if state == "active":
            return "in transaction, working"
        return None

    def stop(self) -> dict[str, float]:
        """The mean number of connections in each state over the samples."""
        self._stop.set()
        self._thread.join(10)
        return {kind: count / max(1, self.samples) for kind, count in self.counts.items()}


class Running:
    """One deployment's replicas and workers, started afresh for one measurement."""

    def __init__(self, deployment: Deployment, workdir: Path, starts: Path, database: str) -> None:
        self.deployment = deployment
        self.database = database
        self.workdir = workdir
        self.env = {"BENCH_STARTS_DIR": str(starts)}
        self.replicas: list[Process] = []
        self.workers: list[Process] = []
        self.targets = [f"127.0.0.1:{free_port()}" for _ in range(deployment.replicas)]
        for n, target in enumerate(self.targets):
            self.replicas.append(
                Process(
                    f"{deployment.key}-replica{n}",
                    [
                        sys.executable, "-m", "scheduler_service",
                        "--database", database,
                        "--listen", target,
                        "--http-listen", "127.0.0.1:0",
                        "--task-types", "bench_noop",
                        "--log-level", "warning",
                    ],
                    workdir,
                    self.env,
                )
            )  # fmt: skip
        for n in range(WORKERS):
            order = self.targets[n % len(self.targets) :] + self.targets[: n % len(self.targets)]
            self.workers.append(
                Process(
                    f"{deployment.key}-worker{n}",
                    [
                        sys.executable, "-m", "worker_service",
                        "--scheduler", ",".join(order),
                        "--worker-id", f"bench-{n}",
                        "--module", "bench.orchestrator_tasks",
                        "--task-types", "bench_noop",
                        "--slots", str(ORCHESTRATOR_SLOTS),
                        "--log-level", "warning",
                    ],
                    workdir,
                    self.env,
                )
            )  # fmt: skip
        wait_until(self._ready, 60, f"{deployment.label}: replicas up, workers connected")

    def check_alive(self) -> None:
        for process in self.replicas + self.workers:
            if not process.running:
                raise RuntimeError(f"{process.name} exited\n{process.output()[-3000:]}")

    def _ready(self) -> bool:
        from orchestrator_client import AsyncClient

        async def workers_seen() -> int:
            counts = []
            for target in self.targets:  # every replica answers and sees both workers
                async with AsyncClient(target) as client:
                    counts.append(len((await client.list_workers()).workers))
            return min(counts)

        self.check_alive()
        try:
            return asyncio.run(workers_seen()) == WORKERS
        except Exception:
            return False

    def stop(self) -> None:
        for process in self.workers + self.replicas:
            process.stop()


def _started(starts: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in starts.glob("*.txt") if p.is_file())


def measure(
    running: Running,
    starts: Path,
    server: PostgresServer | None,
    *,
    tasks: int,
    clients: int,
    inflight: int,
    batch: int,
) -> Figures:
    """Create ``tasks`` from ``clients`` processes at once; time first create to last start."""
    tag = f"{running.deployment.key}-{'bulk' if batch else 'single'}"
    go = running.workdir / f"{tag}.go"
    go.unlink(missing_ok=True)
    outs = [running.workdir / f"{tag}-client{n}.json" for n in range(clients)]
    share = [tasks // clients + (1 if n < tasks % clients else 0) for n in range(clients)]
    creators = [
        Process(
            f"{tag}-client{n}",
            [
                sys.executable, "-m", "bench.scaleout_client",
                "--targets", ",".join(running.targets),
                "--tasks", str(share[n]),
                "--inflight", str(inflight),
                "--batch", str(batch),
                "--go", str(go),
                "--out", str(outs[n]),
            ],
            running.workdir,
        )
        for n in range(clients)
    ]  # fmt: skip
    try:

        def clients_ready() -> bool:
            for creator in creators:
                if not creator.running:
                    raise RuntimeError(f"{creator.name} exited:\n{creator.output()[-2000:]}")
            return all("ready" in creator.output() for creator in creators)

        wait_until(clients_ready, 60, f"{tag}: clients connected")
        replica_pids = [p.popen.pid for p in running.replicas]
        worker_pids = [p.popen.pid for p in running.workers]
        pg_pids = _postgres_pids(server) if server is not None else []
        sampler = ActivitySampler(running.database) if server is not None else None
        before = _cpu(replica_pids + worker_pids + pg_pids)
        busy_before = _machine_busy()
        go.touch()
        opened = time.monotonic()

        def all_started() -> bool:
            running.check_alive()
            return _started(starts) >= tasks

        wait_until(all_started, max(120.0, tasks / 50), f"{tag}: {tasks} tasks started")
        window = time.monotonic() - opened
        # Backends that began during the window count from zero.
        pg_pids = _postgres_pids(server) if server is not None else []
        after = _cpu(replica_pids + worker_pids + pg_pids)
        busy = _machine_busy() - busy_before
        waits = sampler.stop() if sampler is not None else {}
        wait_until(lambda: all(not c.running for c in creators), 60, f"{tag}: clients done")
    finally:
        for creator in creators:
            creator.stop()
    results = []
    for creator, out in zip(creators, outs, strict=True):
        if not out.exists():
            raise RuntimeError(f"{creator.name} wrote no result:\n{creator.output()[-2000:]}")
        results.append(json.loads(out.read_text()))
    first = min(r["first"] for r in results)
    last_ack = max(r["last"] for r in results)
    last_start = max(s.started for s in read_starts(starts))

    def used(pids: list[int]) -> float:
        return sum(after.get(pid, 0.0) - before.get(pid, 0.0) for pid in pids if pid in after)

    figures = Figures()
    figures["create/s"] = tasks / (last_ack - first)
    figures["end-to-end/s"] = tasks / (last_start - first)
    for n, pid in enumerate(replica_pids):
        figures[f"replica{n} CPU %"] = 100 * used([pid]) / window
    cpu = {
        "replicas": used(replica_pids),
        "postgres": used(pg_pids),
        "workers": used(worker_pids),
        "clients": sum(r["cpu"] for r in results),
    }
    cpu["others"] = max(0.0, busy - sum(cpu.values()))
    for part, seconds in cpu.items():
        figures[f"{part} CPU %"] = 100 * seconds / window
    figures["machine busy %"] = 100 * busy / window
    for kind, mean in waits.items():
        figures[f"connections {kind}"] = mean
    return figures


def scaleout(workdir: Path, *, tasks: int, clients: int, inflight: int) -> Figures:
    """Every deployment, each way of creating; figures named ``<deployment> <mode> <name>``."""
    figures = Figures()
    server = PostgresServer(postgres_binaries(), durable=True)
    server.start()
    try:
        for deployment in DEPLOYMENTS:
            for mode, batch in MODES:
                starts = workdir / "scaleout-starts"
                shutil.rmtree(starts, ignore_errors=True)
                starts.mkdir(parents=True)
                if deployment.postgres:
                    database = server.new_database()
                else:
                    sqlite = workdir / "scaleout.db"
                    for path in workdir.glob("scaleout.db*"):
                        path.unlink()
                    database = str(sqlite)
                running = Running(deployment, workdir, starts, database)
                try:
                    measured = measure(
                        running,
                        starts,
                        server if deployment.postgres else None,
                        tasks=tasks,
                        clients=clients,
                        inflight=inflight,
                        batch=batch,
                    )
                finally:
                    running.stop()
                for name, value in measured.values.items():
                    figures[f"{deployment.key} {mode} {name}"] = value
                print(
                    f"    {deployment.label}, {mode}: "
                    f"{measured['end-to-end/s']:,.0f} tasks/s end to end",
                    flush=True,
                )
                time.sleep(1)  # let the machine settle between deployments
    finally:
        server.stop()
    return figures


def _ratio(figures: Figures, top: str, bottom: str) -> str:
    a, b = figures.values.get(top), figures.values.get(bottom)
    return "—" if a is None or not b else f"{a / b:.2f}×"


def table(figures: Figures) -> str:
    """The rates and ratios, then where the CPU went."""
    lines = [
        "| deployment | single creates, end-to-end tasks/s | batches of 1,000, end-to-end "
        "tasks/s | single creates/s | batch creates/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for d in DEPLOYMENTS:
        cells = [d.label]
        for name in ("end-to-end/s", "create/s"):
            for mode, _ in MODES:
                value = figures.values.get(f"{d.key} {mode} {name}")
                cells.append("—" if value is None else f"{value:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    for label, top, bottom in (
        ("3 replicas ÷ 1 replica (PostgreSQL)", "pg3", "pg1"),
        ("PostgreSQL 1 replica ÷ SQLite", "pg1", "sqlite1"),
        ("PostgreSQL 3 replicas ÷ SQLite", "pg3", "sqlite1"),
    ):
        cells = [label]
        for mode, _ in MODES:
            cells.append(
                _ratio(figures, f"{top} {mode} end-to-end/s", f"{bottom} {mode} end-to-end/s")
            )
        lines.append("| " + " | ".join(cells) + " | | |")
    lines += [
        "",
        "CPU over the window, % of one core (the host has "
        f"{os.cpu_count()} cores: {100 * (os.cpu_count() or 1)} % in all)",
        "",
        "| deployment, creates | replicas (each) | PostgreSQL | workers | clients | others |"
        " machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for d in DEPLOYMENTS:
        for mode, _ in MODES:
            key = f"{d.key} {mode}"
            if f"{key} end-to-end/s" not in figures.values:
                continue
            each = " / ".join(
                f"{figures[f'{key} replica{n} CPU %']:.0f}" for n in range(d.replicas)
            )
            cells = [f"{d.label}, {mode}", f"{figures[f'{key} replicas CPU %']:.0f} ({each})"]
            cells += [f"{figures[f'{key} {part} CPU %']:.0f}" for part in PARTS[1:]]
            cells.append(f"{figures[f'{key} machine busy %']:.0f}")
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "The replicas' PostgreSQL connections over the window (pg_stat_activity every 20 ms;"
        " the mean number in each state)",
        "",
        "| deployment, creates | " + " | ".join(WAITS) + " |",
        "|---|" + "---:|" * len(WAITS),
    ]
    for d in DEPLOYMENTS:
        for mode, _ in MODES:
            key = f"{d.key} {mode}"
            if f"{key} connections {WAITS[0]}" in figures.values:
                means = [f"{figures[f'{key} connections {kind}']:.2f}" for kind in WAITS]
                lines.append(f"| {d.label}, {mode} | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"
