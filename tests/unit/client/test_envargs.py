"""Options fall back to ``ORCHESTRATOR_*`` variables, also inside argument groups."""

from __future__ import annotations

import pytest

from orchestrator_client.envargs import EnvArgumentParser, env_name


def test_env_name() -> None:
    assert env_name("--http-listen") == "ORCHESTRATOR_HTTP_LISTEN"


def test_parser_can_be_built_and_helps(capsys: pytest.CaptureFixture[str]) -> None:
    parser = EnvArgumentParser(prog="x", environ={})
    parser.add_argument("--listen", default="a", help="where")
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["--help"])
    assert caught.value.code == 0
    help_text = capsys.readouterr().out
    assert "[env ORCHESTRATOR_LISTEN]" in help_text
    assert "ORCHESTRATOR_HELP" not in help_text


def test_flag_beats_variable_beats_default() -> None:
    parser = EnvArgumentParser(environ={"ORCHESTRATOR_SLOTS": "7"})
    parser.add_argument("--slots", type=int, default=1)
    assert parser.parse_args([]).slots == 7
    assert parser.parse_args(["--slots", "3"]).slots == 3
    assert EnvArgumentParser(environ={}).parse_args([]) is not None


def test_variables_reach_arguments_added_to_groups() -> None:
    parser = EnvArgumentParser(environ={"ORCHESTRATOR_LISTEN": "0.0.0.0:1"})
    parser.add_argument_group("network").add_argument("--listen", default="127.0.0.1:2")
    assert parser.parse_args([]).listen == "0.0.0.0:1"


def test_version_action_reads_no_variable(capsys: pytest.CaptureFixture[str]) -> None:
    parser = EnvArgumentParser(prog="x", environ={"ORCHESTRATOR_VERSION": "boom"})
    parser.add_argument("--version", action="version", version="x 1")
    with pytest.raises(SystemExit):
        parser.parse_args(["--version"])
    assert capsys.readouterr().out.strip() == "x 1"


def test_bad_variable_names_itself(capsys: pytest.CaptureFixture[str]) -> None:
    parser = EnvArgumentParser(environ={"ORCHESTRATOR_SLOTS": "many"})
    with pytest.raises(SystemExit):
        parser.add_argument("--slots", type=int)
    assert "ORCHESTRATOR_SLOTS='many'" in capsys.readouterr().err
