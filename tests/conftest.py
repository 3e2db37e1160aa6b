"""Fixtures shared by every tier; process fixtures live in ``tests/support``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.postgres import PostgresServer, require_postgres


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of SQLite itself (its file, its crash hook, its power-cut behaviour) run on
    SQLite only, and tests of replicas on PostgreSQL only: their other instances are
    deselected, not skipped."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        backend = params.get("cluster", params.get("scheduler"))
        other = {"postgres": "sqlite_only", "sqlite": "postgres_only"}.get(str(backend))
        (dropped if other and item.get_closest_marker(other) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


BACKENDS = ("sqlite", "postgres")
#: The variable that picks the backends (``sqlite``, ``postgres`` or both, comma separated).
BACKENDS_VARIABLE = "ORCHESTRATOR_TEST_BACKENDS"


def backend_params() -> list[str]:
    """The backends a store-using fixture is parametrised over (see BACKENDS_VARIABLE)."""
    chosen = os.environ.get(BACKENDS_VARIABLE, ",".join(BACKENDS)).split(",")
    return [name for name in BACKENDS if name in chosen]


@pytest.fixture(params=backend_params())
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """Real scheduler and worker processes on loopback, on an SQLite file in tmp_path or on
    a database of its own on the test run's PostgreSQL server: every test that uses it runs
    on both backends, unless marked ``sqlite_only`` (it tests SQLite itself).

    Their logs are printed when the test fails.
    """
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    cluster = Cluster(tmp_path, url)
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
