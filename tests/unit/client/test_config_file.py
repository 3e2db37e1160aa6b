"""``--config FILE``: option values from TOML, under flags and variables, checked like flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator_client.envargs import EnvArgumentParser
from scheduler_service.config import SchedulerConfig
from scheduler_service.config import build_parser as scheduler_parser
from worker_service.config import WorkerConfig
from worker_service.config import build_parser as worker_parser


def _parser(environ: dict[str, str] | None = None) -> EnvArgumentParser:
    """A parser with one option of each kind the services use."""
    parser = EnvArgumentParser(prog="svc", environ=environ or {})
    parser.add_config_option()
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--name", default="")
    parser.add_argument("--level", choices=("info", "debug"), default="info")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--types", action="append")
    parser.add_argument("--extra", action="append", env=False)
    return parser


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "svc.toml"
    path.write_text(text)
    return str(path)


def _error(parser: EnvArgumentParser, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as raised:
        parser.parse_args(argv)
    assert raised.value.code == 2
    return capsys.readouterr().err


def test_flag_beats_variable_beats_file_beats_default(tmp_path: Path) -> None:
    config = _write(tmp_path, 'lease_ttl = 12\nname = "from-file"\n')
    assert _parser().parse_args([]).lease_ttl == 30.0
    assert _parser().parse_args(["--config", config]).lease_ttl == 12.0
    env = {"ORCHESTRATOR_LEASE_TTL": "20"}
    args = _parser(env).parse_args(["--config", config])
    assert (args.lease_ttl, args.name) == (20.0, "from-file")
    assert _parser(env).parse_args(["--config", config, "--lease-ttl", "5"]).lease_ttl == 5.0


def test_the_file_may_be_named_by_the_variable(tmp_path: Path) -> None:
    config = _write(tmp_path, "lease-ttl = 7.5\n")
    assert _parser({"ORCHESTRATOR_CONFIG": config}).parse_args([]).lease_ttl == 7.5
    other = tmp_path / "other.toml"
    other.write_text("lease-ttl = 8\n")
    # The flag names the file over the variable, as for every option.
    parser = _parser({"ORCHESTRATOR_CONFIG": config})
    assert parser.parse_args([f"--config={other}"]).lease_ttl == 8.0


def test_dashes_and_underscores_name_the_same_key(tmp_path: Path) -> None:
    assert _parser().parse_args(["--config", _write(tmp_path, "lease-ttl = 3")]).lease_ttl == 3
    assert _parser().parse_args(["--config", _write(tmp_path, "lease_ttl = 4")]).lease_ttl == 4


def test_both_spellings_of_one_key_are_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, "lease-ttl = 3\nlease_ttl = 4\n")
    err = _error(_parser(), ["--config", config], capsys)
    assert "'lease_ttl' and 'lease-ttl' set one option" in err
    assert config in err


def test_an_unknown_key_is_named_with_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, "lease_tll = 3\n")
    err = _error(_parser(), ["--config", config], capsys)
    assert f"config file {config}: unknown key 'lease_tll' (did you mean 'lease-ttl'?)" in err


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('lease_ttl = "soon"', "lease_ttl: invalid float value: 'soon'"),
        ("lease_ttl = true", "lease_ttl: expected a string or a number, got true"),
        ("lease_ttl = [1, 2]", "lease_ttl: expected one value, got an array [1, 2]"),
        ("name = 5", "name: expected a string, got 5"),
        ("insecure = 1", "insecure: expected true or false, got 1"),
        ("insecure = 'yes'", "insecure: expected true or false, got 'yes'"),
        ("level = 'loud'", "level: invalid choice: 'loud'"),
        ("lease_ttl = 1979-05-27", "lease_ttl: expected a string or a number, got"),
        ("[scheduler]\nlease_ttl = 3", "[scheduler]: tables are not read"),
        ("config = 'other.toml'", "config: a config file cannot name another"),
        ("help = true", "unknown key 'help'"),
        ("lease_ttl = ", "not valid TOML"),
    ],
)
def test_wrong_values_are_named_with_the_key_and_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    config = _write(tmp_path, text)
    err = _error(_parser(), ["--config", config], capsys)
    assert f"config file {config}: " in err
    assert needle in err


def test_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.toml"
    err = _error(_parser(), ["--config", str(missing)], capsys)
    assert f"--config {missing}: No such file or directory" in err


def test_a_value_a_variable_sets_is_not_checked_in_the_file(tmp_path: Path) -> None:
    """The variable wins, so the file's value for that option is never used."""
    config = _write(tmp_path, "lease_ttl = 3\nname = 'n'\n")
    args = _parser({"ORCHESTRATOR_LEASE_TTL": "9"}).parse_args(["--config", config])
    assert (args.lease_ttl, args.name) == (9.0, "n")


def test_booleans_switch_store_true_flags(tmp_path: Path) -> None:
    assert _parser().parse_args(["--config", _write(tmp_path, "insecure = true")]).insecure
    assert not _parser().parse_args(["--config", _write(tmp_path, "insecure = false")]).insecure
    env = {"ORCHESTRATOR_INSECURE": "false"}
    assert not _parser(env).parse_args(["--config", _write(tmp_path, "insecure = true")]).insecure


def test_boolean_optional_flags_take_both_spellings(tmp_path: Path) -> None:
    parser = EnvArgumentParser(environ={})
    parser.add_config_option()
    parser.add_argument("--color", action=argparse.BooleanOptionalAction, default=None)
    assert parser.parse_args(["--config", _write(tmp_path, "color = false")]).color is False
    assert parser.parse_args(["--config", _write(tmp_path, "no-color = true")]).color is False
    assert parser.parse_args(["--config", _write(tmp_path, "color = true")]).color is True


def test_append_flags_take_an_array_or_one_value_and_flags_replace_them(tmp_path: Path) -> None:
    config = _write(tmp_path, 'types = ["a", "b"]\nextra = "--slots=4"\n')
    args = _parser().parse_args(["--config", config])
    assert (args.types, args.extra) == (["a", "b"], ["--slots=4"])
    # The command line replaces the file's list rather than adding to it (flags win) ...
    args = _parser().parse_args(["--config", config, "--types", "c", "--types", "d"])
    assert args.types == ["c", "d"]
    # ... and so does a variable.
    args = _parser({"ORCHESTRATOR_TYPES": "x,y"}).parse_args(["--config", config])
    assert args.types == ["x", "y"]


def test_without_add_config_option_there_is_no_config_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = EnvArgumentParser(prog="svc", environ={"ORCHESTRATOR_CONFIG": "/nonexistent"})
    assert parser.parse_args([]) is not None
    err = _error(parser, ["--config", "x.toml"], capsys)
    assert "unrecognized arguments: --config" in err


def test_help_shows_the_file_values_as_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, "lease_ttl = 12\n")
    with pytest.raises(SystemExit):
        _parser().parse_args(["--config", config, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: 12) [env ORCHESTRATOR_LEASE_TTL]" in help_text
    assert "the variable over the file" in help_text
    # Defaults meaning "not set" are not printed.
    assert "(default: None)" not in help_text and "(default: )" not in help_text
    assert "(default: False)" not in help_text


def test_a_parser_forgets_the_file_after_parsing(tmp_path: Path) -> None:
    parser = _parser()
    assert parser.parse_args(["--config", _write(tmp_path, "lease_ttl = 3")]).lease_ttl == 3
    assert parser.parse_args([]).lease_ttl == 30.0


# -- the services -------------------------------------------------------------------------


def test_scheduler_reads_a_config_file(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        """
        database = "sqlite:////data/o.db"
        lease-ttl = 40
        heartbeat_interval = 4
        sqlite_synchronous = "normal"
        task_types = ["a", "b,c"]
        with_worker = true
        worker_arg = ["--slots=4"]
        log-format = "json"
        """,
    )
    built = SchedulerConfig.from_args(["--config", config], {})
    assert built.database_path == "/data/o.db"
    assert (built.lease_ttl, built.heartbeat_interval) == (40.0, 4.0)
    assert built.sqlite_synchronous == "NORMAL"
    assert built.task_types == ("a", "b", "c")
    assert built.with_worker and built.worker_args == ("--slots=4",)
    assert built.log_format == "json"


def test_scheduler_config_file_values_are_validated_like_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, "lease_ttl = 1\nheartbeat_interval = 1\n")
    with pytest.raises(SystemExit) as raised:
        SchedulerConfig.from_args(["--config", config], {})
    assert raised.value.code == 2
    assert "--lease-ttl must be at least twice --heartbeat-interval" in capsys.readouterr().err


def test_scheduler_auth_tokens_in_the_file_is_a_path_and_the_variable_wins(
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("file-token-0123456789abcdef admin ops\n")
    tokens.chmod(0o600)
    config = _write(tmp_path, f"auth_tokens = {str(tokens)!r}\n")
    from_file = SchedulerConfig.from_args(["--config", config], {})
    assert from_file.auth_tokens is not None
    variable = {"ORCHESTRATOR_AUTH_TOKENS": "env-token-0123456789abcdef admin ci\n"}
    from_variable = SchedulerConfig.from_args(["--config", config], variable)
    assert from_variable.auth_tokens is not None
    assert from_variable.auth_tokens.lookup("env-token-0123456789abcdef") is not None
    assert from_variable.auth_tokens.lookup("file-token-0123456789abcdef") is None
    assert from_file.auth_tokens.lookup("file-token-0123456789abcdef") is not None


def test_worker_reads_a_config_file(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        """
        scheduler = "a:1,b:2"
        slots = 4
        task_types = ["foo", "bar"]
        fetch-allow = "127.0.0.1,10.0.0.0/8"
        tls = true
        """,
    )
    built = WorkerConfig.from_args(["--config", config], {})
    assert built.schedulers == ("a:1", "b:2")
    assert built.slots == 4
    assert built.task_types == ("foo", "bar")
    assert built.fetch_allow == ("127.0.0.1", "10.0.0.0/8")
    assert built.tls is not None
    flagged = WorkerConfig.from_args(["--config", config, "--task-types", "baz"], {})
    assert flagged.task_types == ("baz",)


def test_worker_checks_file_values_with_the_flags_own_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, "slots = 0\n")
    with pytest.raises(SystemExit) as raised:
        WorkerConfig.from_args(["--config", config], {})
    assert raised.value.code == 2
    assert f"config file {config}: slots: must be between 1 and 10000, got 0" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("build", [scheduler_parser, worker_parser], ids=["scheduler", "worker"])
def test_service_help_shows_no_empty_defaults_and_the_precedence(
    build: Callable[[dict[str, str]], EnvArgumentParser],
) -> None:
    help_text = " ".join(build({}).format_help().split())
    for noise in ("(default: None)", "(default: )", "(default: False)", "(default: [])"):
        assert noise not in help_text
    assert "--config FILE" in help_text and "[env ORCHESTRATOR_CONFIG]" in help_text
    assert "The command line wins over the variable, the variable over the file" in help_text
    assert "(default: info) [env ORCHESTRATOR_LOG_LEVEL]" in help_text
