from __future__ import annotations

import pytest

from scheduler_service.config import SchedulerConfig


def test_defaults_match_the_spec() -> None:
    config = SchedulerConfig.from_args([], {})
    assert config.listen == "127.0.0.1:50051"
    assert config.http_listen == "127.0.0.1:8080"
    assert config.database_path == "./orchestrator.db"
    assert config.sqlite_synchronous == "FULL"


def test_environment_is_read_and_flags_win() -> None:
    env = {"ORCHESTRATOR_DATABASE": "sqlite:////data/o.db", "ORCHESTRATOR_LEASE_TTL": "12"}
    config = SchedulerConfig.from_args([], env)
    assert config.database_path == "/data/o.db" and config.lease_ttl == 12.0
    config = SchedulerConfig.from_args(["--database", "x.db"], env)
    assert config.database_path == "x.db"
    config = SchedulerConfig.from_args([], {"ORCHESTRATOR_WITH_WORKER": "true"})
    assert config.with_worker


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--lease-ttl", "1", "--heartbeat-interval", "1"], {}, "--lease-ttl"),
        (["--database", "mysql://x/y"], {}, "postgresql://"),
        (["--database", "mysql://x"], {}, "--database"),
        ([], {"ORCHESTRATOR_LEASE_TTL": "soon"}, "ORCHESTRATOR_LEASE_TTL"),
        (["--sqlite-synchronous", "OFF"], {}, "--sqlite-synchronous"),
    ],
)
def test_bad_configuration_names_the_option(
    argv: list[str], env: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        SchedulerConfig.from_args(argv, env)
    assert raised.value.code == 2
    assert needle in capsys.readouterr().err
