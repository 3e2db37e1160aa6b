from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scheduler_service.store.sqlite.store import SqliteOptions, SqliteTaskStore
from tests.support.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[SqliteTaskStore]:
    """The real SQLite store on a file; time is the test's."""
    store = SqliteTaskStore(str(tmp_path / "store.db"), SqliteOptions(clock=clock))
    await store.open()
    await store.register_task_types(["foo", "bar"])
    try:
        yield store
    finally:
        await store.close()
