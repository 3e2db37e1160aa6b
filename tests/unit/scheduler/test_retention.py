"""Retention's pure parts: durations, the policy, the id bound, and the options."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler_service.config import SchedulerConfig
from scheduler_service.domain.ids import encode
from scheduler_service.domain.model import MICROS_PER_SECOND, TaskState
from scheduler_service.domain.retention import RetentionPolicy, parse_duration
from scheduler_service.store.sqlite.retention import id_bound

DAY = 86_400


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("3600", 3600.0),
        ("0.5", 0.5),
        (".25", 0.25),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("12h", 43_200.0),
        ("7d", 7 * DAY),
        ("1.5D", 1.5 * DAY),
        (" 2h ", 7200.0),
    ],
)
def test_durations_are_seconds_or_one_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-1", "7w", "1h30m", "d", "1e3", "nan", "inf"])
def test_other_durations_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="30m, 7d"):
        parse_duration(text)


def test_zero_keeps_a_state_forever() -> None:
    policy = RetentionPolicy.from_seconds(succeeded=60, failed=0, cancelled=1, tombstones=0)
    assert policy.task_ages == {
        TaskState.SUCCEEDED: 60 * MICROS_PER_SECOND,
        TaskState.CANCELLED: MICROS_PER_SECOND,
    }
    assert policy.prunes_anything
    nothing = RetentionPolicy.from_seconds(succeeded=0, failed=0, cancelled=0, tombstones=0)
    assert nothing.task_ages == {} and not nothing.prunes_anything


@given(
    cutoff_ms=st.integers(min_value=0, max_value=(1 << 48) - 2),
    random_bits=st.integers(min_value=0, max_value=(1 << 80) - 1),
    later_ms=st.integers(min_value=1, max_value=1000),
)
def test_the_id_bound_splits_ids_at_the_cutoffs_millisecond(
    cutoff_ms: int, random_bits: int, later_ms: int
) -> None:
    cutoff = cutoff_ms * 1000 + 999  # any microsecond of that millisecond
    made_at_cutoff = encode((cutoff_ms << 80) | random_bits)
    made_after = encode((min(cutoff_ms + later_ms, (1 << 48) - 1) << 80) | random_bits)
    assert made_at_cutoff < id_bound(cutoff) <= made_after


def test_retention_defaults_and_options() -> None:
    config = SchedulerConfig.from_args([], {})
    assert (config.retain_succeeded, config.retain_failed, config.retain_cancelled) == (
        7 * DAY,
        30 * DAY,
        7 * DAY,
    )
    assert config.retain_tombstones == 7 * DAY
    assert (config.prune_interval, config.prune_batch) == (60.0, 500)
    config = SchedulerConfig.from_args(
        ["--retain-failed", "0", "--prune-batch", "50"], {"ORCHESTRATOR_RETAIN_SUCCEEDED": "1h"}
    )
    assert config.retain_succeeded == 3600.0 and config.prune_batch == 50
    assert TaskState.FAILED not in config.retention.task_ages


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--retain-succeeded", "a week"], {}, "--retain-succeeded: expected seconds"),
        ([], {"ORCHESTRATOR_RETAIN_FAILED": "-1"}, "ORCHESTRATOR_RETAIN_FAILED"),
        (["--prune-interval", "0"], {}, "--prune-interval must be"),
        (["--prune-batch", "0"], {}, "--prune-batch must be 1 to 10000"),
        (["--prune-batch", "20000"], {}, "--prune-batch must be 1 to 10000"),
    ],
)
def test_bad_retention_options_name_the_option(
    argv: list[str], env: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        SchedulerConfig.from_args(argv, env)
    assert needle in capsys.readouterr().err
