"""How queued results are cut into ResultBatch messages."""

from __future__ import annotations

import pytest

from orchestrator.v1 import worker_service_pb2 as pb
from worker_service import connection


def result(index: int, size: int = 0) -> pb.TaskResult:
    return pb.TaskResult(lease_id=f"L{index}", task_id=f"T{index}", result_json=b"x" * size)


def test_at_most_max_batch_results_per_message() -> None:
    results = [result(i) for i in range(2500)]
    batches = connection._batches(results)
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [r for b in batches for r in b] == results  # order kept


def test_cut_by_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "MAX_BATCH_BYTES", 250)
    batches = connection._batches([result(i, size=100) for i in range(5)])
    assert [len(b) for b in batches] == [2, 2, 1]


def test_one_oversized_result_still_goes_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "MAX_BATCH_BYTES", 10)
    assert [len(b) for b in connection._batches([result(1, 50), result(2, 50)])] == [1, 1]


def test_nothing_to_send() -> None:
    assert connection._batches([]) == []
