"""The CSV batch of the first reference design, at 10,000 rows: a mix of types (some
unsupported, some failing), killed half-way and re-run — the results file is right, and no
task was created twice."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest

from orchestrator.v1 import admin_service_pb2
from tests.support.clis import taskctl_command
from tests.support.cluster import Cluster
from tests.support.commands import BackgroundCommand, run_command
from tests.support.http_site import local_site
from tests.support.polling import eventually

ROWS = 10_000


def kind(i: int) -> str:
    return [
        "sum2", "sum2", "sum2", "sum2", "sum2", "sum2", "sum2", "sum2",
        "mult3", "mult3", "mult3", "mult3", "mult3",
        "process_data", "process_data", "process_data", "process_data",
        "fetch_fails", "unsupported", "baz",
    ][i % 20]  # fmt: skip


def write_input(path: Path, site: str) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["task_id", "task_type", "first", "second", "third", "sleep_seconds", "url"]
        )
        for i in range(ROWS):
            k = kind(i)
            row = [f"row-{i}", k, "", "", "", "", ""]
            if k == "sum2":
                row[2:4] = [str(i), "1"]
            elif k == "mult3":
                row[2:5] = [str(i), "2", "3"]
            elif k == "process_data":
                row[5] = "0"
            elif k == "fetch_fails":
                row[1], row[5], row[6] = "process_data", "0", f"{site}/missing"
            elif k == "unsupported":
                row[1] = "frobnicate"
            writer.writerow(row)


@pytest.mark.timeout(600)
async def test_ten_thousand_rows_killed_half_way_and_resumed(
    cluster: Cluster, tmp_path: Path
) -> None:
    async with local_site() as site:
        scheduler = await cluster.start_scheduler()
        # The site is on loopback, which the worker refuses to fetch unless allowed.
        await cluster.start_worker(
            "--slots", "32", "--fetch-url", f"{site}/ok", "--fetch-allow", "127.0.0.1"
        )
        source = tmp_path / "tasks.csv"
        write_input(source, site)
        results = tmp_path / "results.csv"
        command = [
            *taskctl_command(), "--scheduler", scheduler.grpc_address, "--client-id", "csv",
            "--no-json", "batch", str(source), "-o", str(results), "--max-attempts", "1",
        ]  # fmt: skip
        admin = cluster.admin()

        async def created() -> int:
            stats = await admin.GetStats(admin_service_pb2.GetStatsRequest())
            t = stats.totals
            return t.scheduled + t.pending + t.running + t.succeeded + t.failed + t.cancelled

        async with await BackgroundCommand.start(command) as first:

            async def half() -> bool:
                return await created() >= ROWS // 2

            await eventually(half, timeout=120, message="half submitted")
            first.process.send_signal(signal.SIGKILL)
            await first.process.wait()
        assert not results.exists(), "an interrupted batch must not leave a results file"
        assert await created() < ROWS * 19 // 20, "the kill came too late to test a resume"

        second = await run_command(command, within=400)
        assert second.returncode == 1, second  # some rows fail on purpose
        resumed = results.read_bytes()
        third = await run_command(command, within=120)
        assert third.returncode == 1 and results.read_bytes() == resumed  # stable: same file

    supported = ROWS - ROWS // 20
    assert await created() == supported, "a task was created twice (or lost)"
    with results.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["task_id"] for r in rows] == [f"row-{i}" for i in range(ROWS)]  # input order
    assert list(rows[0])[:4] == ["task_id", "task_type", "final_status", "error_info"]
    for i, row in enumerate(rows):
        k = kind(i)
        if k == "sum2":
            assert (row["final_status"], row["sum"]) == ("SUCCEEDED", str(i + 1)), row
        elif k == "mult3":
            assert (row["final_status"], row["product"]) == ("SUCCEEDED", str(i * 6)), row
        elif k == "process_data":
            assert row["final_status"] == "SUCCEEDED" and row["status_code"] == "200", row
            assert row["bytes"] == "5", row
        elif k == "fetch_fails":
            assert row["final_status"] == "FAILED", row
            assert "fetch failed" in row["error_info"] and "404" in row["error_info"], row
        elif k == "unsupported":
            assert row["final_status"] == "UNSUPPORTED", row
            assert row["error_info"] == "unsupported task_type 'frobnicate'", row
        else:
            assert row["final_status"] == "SUCCEEDED" and 0 <= int(row["number"]) <= 343, row
    print(f"\ncsv batch: {ROWS} rows, killed at half, resumed: {supported} tasks, each once")
