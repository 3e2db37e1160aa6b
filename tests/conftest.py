"""Fixtures shared by every tier; process fixtures live in ``tests/support``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.postgres import PostgresServer, require_postgres


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """Real scheduler and worker processes on loopback, on an SQLite file in tmp_path.

    Their logs are printed when the test fails.
    """
    cluster = Cluster(tmp_path)
    try:
        yield cluster
    finally:
        await cluster.close()
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(cluster.dump())


@pytest.fixture(scope="session")
def postgres_server() -> Generator[PostgresServer, None, None]:
    """One real PostgreSQL server for the run (tests/support/postgres.py)."""
    server = PostgresServer(require_postgres())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database of its own for one test."""
    return postgres_server.new_database()
