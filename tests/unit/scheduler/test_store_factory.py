"""open_store: a --database value picks the backend and carries the settings to it (builds
the store only: nothing is opened or connected here)."""

from __future__ import annotations

import pytest

from scheduler_service.store.factory import StoreSettings, is_postgres_url, open_store, redacted
from scheduler_service.store.postgres.store import PostgresTaskStore
from scheduler_service.store.sqlite.store import SqliteTaskStore
from tests.support.clock import ManualClock

SETTINGS = StoreSettings(
    clock=ManualClock(),
    priority_aging=7,
    idempotency_retention=11,
    schedule_grace=13,
    sqlite_synchronous="NORMAL",
    postgres_pool_size=3,
)


@pytest.mark.parametrize(
    ("url", "path"),
    [("/var/lib/orch/store.db", "/var/lib/orch/store.db"), ("sqlite:///x/y.db", "x/y.db")],
)
def test_paths_and_sqlite_urls_open_the_sqlite_store(url: str, path: str) -> None:
    store = open_store(url, SETTINGS)
    assert isinstance(store, SqliteTaskStore)
    assert store.path == path
    options = store.options
    assert (options.priority_aging, options.idempotency_retention, options.schedule_grace) == (
        7,
        11,
        13,
    )
    assert options.synchronous == "NORMAL" and options.clock is SETTINGS.clock


@pytest.mark.parametrize(
    "url", ["postgresql://orch@db.internal:5432/orch", "postgres://orch@db/orch?sslmode=require"]
)
def test_postgresql_urls_open_the_postgres_store(url: str) -> None:
    store = open_store(url, SETTINGS)
    assert isinstance(store, PostgresTaskStore)
    assert store.url == url and is_postgres_url(url)
    options = store.options
    assert (options.priority_aging, options.idempotency_retention, options.schedule_grace) == (
        7,
        11,
        13,
    )
    assert options.pool_size == 3 and options.clock is SETTINGS.clock


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/orch", "expected a path, sqlite:///path or postgresql://"),
        ("", "must not be empty"),
    ],
)
def test_other_values_are_refused_naming_the_flag(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        open_store(url)
    assert "--database" in str(caught.value)


def test_defaults_match_the_sqlite_stores() -> None:
    store = open_store("store.db")
    assert isinstance(store, SqliteTaskStore)
    assert store.options.priority_aging == 1_000_000
    assert store.options.schedule_grace == 60_000_000


def test_passwords_are_left_out_of_logged_urls() -> None:
    assert (
        redacted("postgresql://orch:s3cr%40t@db:5432/orch") == "postgresql://orch:***@db:5432/orch"
    )
    assert redacted("postgresql://orch@db/orch") == "postgresql://orch@db/orch"
    assert redacted("/var/lib/orch/store.db") == "/var/lib/orch/store.db"
