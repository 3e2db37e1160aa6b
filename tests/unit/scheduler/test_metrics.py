"""SchedulerMetrics' batch recording: which ended attempts finish a task, which are retries,
and which (refused, handed back unstarted) count as neither; the queue depth's zeros."""

from __future__ import annotations

from prometheus_client import Counter

from scheduler_service.domain.model import (
    AttemptOutcome,
    EndedAttempt,
    Lease,
    TaskState,
    TaskTypeRecord,
)
from scheduler_service.engine.metrics import SchedulerMetrics


def counts(counter: Counter) -> dict[tuple[str, ...], float]:
    """Every label set of a counter with its value (the ``_total`` samples)."""
    return {
        tuple(sample.labels.values()): sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def ended(
    type_name: str, state: TaskState | None, outcome: AttemptOutcome, accepted: bool = True
) -> EndedAttempt:
    return EndedAttempt(
        lease_id="L", accepted=accepted, new_state=state, outcome=outcome, type=type_name
    )


def test_ended_attempts_count_as_finished_or_retried_by_type_and_outcome() -> None:
    metrics = SchedulerMetrics()
    metrics.attempts_ended(
        [
            ended("a", TaskState.SUCCEEDED, AttemptOutcome.SUCCEEDED),
            ended("a", TaskState.SUCCEEDED, AttemptOutcome.SUCCEEDED),
            ended("a", TaskState.FAILED, AttemptOutcome.TIMED_OUT),
            ended("a", TaskState.PENDING, AttemptOutcome.FAILED),  # retried
            ended("b", TaskState.PENDING, AttemptOutcome.WORKER_LOST),  # retried
            ended("b", TaskState.WAITING, AttemptOutcome.FAILED),  # retried, behind its group
            ended("b", TaskState.PENDING, AttemptOutcome.RETURNED),  # handed back: neither
            ended("b", None, AttemptOutcome.SUCCEEDED, accepted=False),  # refused: neither
        ]
    )
    assert counts(metrics.tasks_finished) == {("a", "succeeded"): 2, ("a", "failed"): 1}
    assert counts(metrics.task_retries) == {("a",): 1, ("b",): 2}


def test_leases_sent_count_starts_and_lateness_from_the_due_time() -> None:
    metrics = SchedulerMetrics()
    leases = [
        Lease("L1", "T1", "a", "{}", 1, 3, 10, created_at=0, labels={}, due_at=1_000_000),
        Lease("L2", "T2", "a", "{}", 1, 3, 10, created_at=0, labels={}, due_at=2_500_000),
        Lease("L3", "T3", "b", "{}", 1, 3, 10, created_at=0, labels={}, due_at=5_000_000),
    ]
    metrics.leases_sent(leases, now=3_000_000)
    assert counts(metrics.tasks_started) == {("a",): 2, ("b",): 1}
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for m in metrics.dispatch_latency.collect()
        for s in m.samples
    }
    # 2 s and 0.5 s late; b, sent before its due time (two processes' clocks), counts 0.
    assert samples[("orchestrator_dispatch_latency_seconds_sum", (("type", "a"),))] == 2.5
    assert samples[("orchestrator_dispatch_latency_seconds_sum", (("type", "b"),))] == 0
    assert samples[("orchestrator_dispatch_latency_seconds_count", (("type", "a"),))] == 2


def test_queue_depth_sets_every_state_of_every_type_and_drops_what_is_gone() -> None:
    metrics = SchedulerMetrics()
    metrics.set_queue_depth(
        [
            TaskTypeRecord("a", False, 0, {TaskState.PENDING: 4}),
            TaskTypeRecord("gone", False, 0, {}),
        ]
    )
    metrics.set_queue_depth([TaskTypeRecord("a", False, 0, {TaskState.RUNNING: 1})])
    depth = {
        (s.labels["type"], s.labels["state"]): s.value
        for m in metrics.queue_depth.collect()
        for s in m.samples
    }
    assert depth == {
        ("a", "scheduled"): 0,
        ("a", "pending"): 0,
        ("a", "running"): 1,
        ("a", "succeeded"): 0,
        ("a", "failed"): 0,
        ("a", "cancelled"): 0,
    }


async def test_a_failed_read_empties_the_queue_depth_rather_than_leaving_it_stale() -> None:
    metrics = SchedulerMetrics()
    metrics.set_queue_depth([TaskTypeRecord("a", False, 0, {TaskState.PENDING: 4})])

    async def broken() -> list[TaskTypeRecord]:
        raise OSError("disk gone")

    await metrics.refresh_queue_depth(broken)
    assert [s for m in metrics.queue_depth.collect() for s in m.samples] == []
