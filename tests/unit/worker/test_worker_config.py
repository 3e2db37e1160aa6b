"""WorkerConfig from flags and ORCHESTRATOR_* variables."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from orchestrator_client.protocol import DEFAULT_SCHEDULER_ADDRESS
from worker_service.config import WorkerConfig


def test_defaults() -> None:
    config = WorkerConfig.from_args([], {})
    assert config.schedulers == (DEFAULT_SCHEDULER_ADDRESS,)
    assert config.worker_id == f"{socket.gethostname()}-{os.getpid()}"
    assert config.slots == 10
    assert config.task_types == () and config.modules == ()
    assert config.bar_url == "" and config.fetch_url == ""
    assert config.fetch_allow == ()  # the public internet only
    assert config.fetch_max_bytes == 10 * 1024 * 1024
    assert config.outbox_dir == Path("outbox") and config.reports_dir == Path("reports")
    assert (config.smtp_host, config.smtp_port) == ("", 25)
    assert config.cpu_workers == (os.cpu_count() or 1)
    assert config.shutdown_grace == 30.0
    assert config.reconnect_max_delay == 10.0
    assert config.foo_seconds == 3.0
    assert (config.log_level, config.log_format) == ("info", "text")


def test_flags() -> None:
    config = WorkerConfig.from_args(
        [
            "--scheduler=sched:1234",
            "--worker-id=w1",
            "--slots=3",
            "--task-types=foo, bar",
            "--task-types=baz",
            "--module=a.b,c",
            "--module",
            "d",
            "--bar-url=http://localhost:9/x",
            "--smtp-host=mail",
            "--smtp-port=2525",
            "--cpu-workers=2",
            "--shutdown-grace=0",
            "--reconnect-max-delay=0.5",
            "--foo-seconds=0.01",
            "--log-level=debug",
            "--log-format=json",
        ],
        {},
    )
    assert config.schedulers == ("sched:1234",)
    assert config.worker_id == "w1"
    assert config.slots == 3
    assert config.task_types == ("foo", "bar", "baz")
    assert config.modules == ("a.b", "c", "d")
    assert config.bar_url == "http://localhost:9/x"
    assert (config.smtp_host, config.smtp_port) == ("mail", 2525)
    assert config.cpu_workers == 2
    assert config.shutdown_grace == 0
    assert config.reconnect_max_delay == 0.5
    assert config.foo_seconds == 0.01
    assert (config.log_level, config.log_format) == ("debug", "json")


def test_environment_and_flags_win() -> None:
    environ = {
        "ORCHESTRATOR_SCHEDULER": "env:1",
        "ORCHESTRATOR_SLOTS": "7",
        "ORCHESTRATOR_MODULE": "x, y",
        "ORCHESTRATOR_TASK_TYPES": "foo",
        "ORCHESTRATOR_OUTBOX_DIR": "/tmp/out",
        "ORCHESTRATOR_FETCH_URL": "http://h/",
    }
    from_env = WorkerConfig.from_args([], environ)
    assert from_env.schedulers == ("env:1",)
    assert from_env.slots == 7
    assert from_env.modules == ("x", "y")
    assert from_env.task_types == ("foo",)
    assert from_env.outbox_dir == Path("/tmp/out")
    assert from_env.fetch_url == "http://h/"

    flagged = WorkerConfig.from_args(["--slots=2", "--module=z", "--module=w"], environ)
    assert flagged.slots == 2
    assert flagged.modules == ("z", "w")  # the flags replace the variable, not add to it
    assert flagged.schedulers == ("env:1",)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--slots=0"], "argument --slots: must be between 1 and 10000, got 0"),
        (["--slots=10001"], "argument --slots: must be between 1 and 10000"),
        (["--slots=many"], "argument --slots: expected an integer, got 'many'"),
        (["--smtp-port=0"], "argument --smtp-port: must be between 1 and 65535"),
        (["--cpu-workers=0"], "argument --cpu-workers"),
        (["--shutdown-grace=-1"], "argument --shutdown-grace: must be between 0 and 86400"),
        (["--shutdown-grace=nan"], "argument --shutdown-grace"),
        (["--reconnect-max-delay=0"], "argument --reconnect-max-delay"),
        (["--foo-seconds=x"], "argument --foo-seconds: expected a number, got 'x'"),
        (["--worker-id="], "argument --worker-id: must be 1 to 128 characters"),
        (["--worker-id=" + "w" * 129], "argument --worker-id"),
        (["--scheduler= "], "argument --scheduler: must not be empty"),
        (["--scheduler=a:1,,b:2"], "argument --scheduler: entry 2 of 3 is empty"),
        (["--scheduler=a:1,"], "argument --scheduler: entry 2 of 2 is empty"),
        (["--scheduler=a:1,b"], "argument --scheduler: 'b' is not host:port"),
        (["--scheduler=:50051"], "argument --scheduler: ':50051' is not host:port"),
        (["--scheduler=a:"], "argument --scheduler: 'a:' is not host:port"),
        (["--scheduler=a:0"], "argument --scheduler: 'a:0' is not host:port"),
        (["--scheduler=a:65536"], "argument --scheduler: 'a:65536'"),
        (["--scheduler=a:http"], "argument --scheduler: 'a:http'"),
        (["--log-level=loud"], "argument --log-level: invalid choice: 'loud'"),
        (["--log-format=xml"], "argument --log-format: invalid choice"),
        (["--fetch-allow=10.0.0.1/8"], "argument --fetch-allow: '10.0.0.1/8' is not a CIDR"),
        (["--fetch-allow=a,http://b"], "argument --fetch-allow: 'http://b' is a URL"),
        (["--fetch-allow=h:80"], "argument --fetch-allow: 'h:80' is not an IP address"),
        (["--fetch-max-bytes=0"], "argument --fetch-max-bytes: must be between 1 and"),
    ],
)
def test_bad_flags_name_the_flag(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        WorkerConfig.from_args(argv, {})
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_bad_variables_name_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        WorkerConfig.from_args([], {"ORCHESTRATOR_SLOTS": "0"})
    assert "ORCHESTRATOR_SLOTS='0'" in capsys.readouterr().err


def test_scheduler_lists_by_flag_and_variable() -> None:
    flagged = WorkerConfig.from_args(["--scheduler= a:1, [::1]:2 ,b.example:3"], {})
    assert flagged.schedulers == ("a:1", "[::1]:2", "b.example:3")
    environ = {"ORCHESTRATOR_SCHEDULER": "env-a:1,env-b:2"}
    assert WorkerConfig.from_args([], environ).schedulers == ("env-a:1", "env-b:2")
    # The flag replaces the variable's list; it does not add to it.
    assert WorkerConfig.from_args(["--scheduler", "c:3"], environ).schedulers == ("c:3",)


def test_a_bad_scheduler_list_in_the_variable_names_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        WorkerConfig.from_args([], {"ORCHESTRATOR_SCHEDULER": "a:1,,b:2"})
    assert "ORCHESTRATOR_SCHEDULER='a:1,,b:2': entry 2 of 3 is empty" in capsys.readouterr().err


def test_a_config_needs_a_scheduler() -> None:
    with pytest.raises(ValueError, match="at least one scheduler"):
        WorkerConfig(schedulers=())


def test_handler_settings_carry_what_handlers_need() -> None:
    config = WorkerConfig.from_args(
        ["--bar-url=http://b", "--fetch-url=http://f", "--outbox-dir=o", "--foo-seconds=1"], {}
    )
    settings = config.handler_settings()
    assert (settings.bar_url, settings.fetch_url) == ("http://b", "http://f")
    assert settings.fetch_allow == () and settings.fetch_max_bytes == 10 * 1024 * 1024
    assert settings.outbox_dir == Path("o")
    assert settings.foo_seconds == 1.0


def test_fetch_allowlist_by_flag_and_variable() -> None:
    flagged = WorkerConfig.from_args(
        ["--fetch-allow", "127.0.0.1, 10.0.0.0/8", "--fetch-allow=internal.example,127.0.0.1"],
        {},
    )
    assert flagged.fetch_allow == ("127.0.0.1", "10.0.0.0/8", "internal.example")
    environ = {"ORCHESTRATOR_FETCH_ALLOW": "::1,localhost", "ORCHESTRATOR_FETCH_MAX_BYTES": "5"}
    from_env = WorkerConfig.from_args([], environ)
    assert from_env.fetch_allow == ("::1", "localhost")
    assert from_env.fetch_max_bytes == 5
    # The flag replaces the variable's list; it does not add to it.
    assert WorkerConfig.from_args(["--fetch-allow=[::1]"], environ).fetch_allow == ("[::1]",)
    settings = flagged.handler_settings()
    assert settings.fetch_allow == flagged.fetch_allow
    assert settings.fetch_allowlist.hosts == frozenset({"internal.example"})


def test_a_bad_fetch_allowlist_in_the_variable_names_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        WorkerConfig.from_args([], {"ORCHESTRATOR_FETCH_ALLOW": "10.0.0.1/8"})
    assert "ORCHESTRATOR_FETCH_ALLOW='10.0.0.1/8'" in capsys.readouterr().err
