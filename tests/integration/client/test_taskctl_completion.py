"""``taskctl completion bash|zsh|fish``: scripts the shells accept, completing the real parser.

The bash script is checked by bash itself: parsed with ``bash -n``, then sourced and its
completion function called the way bash calls it (``COMP_WORDS``/``COMP_CWORD``). zsh and fish
are checked the same way where they are installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator_client.cli import ExitCode, main
from orchestrator_client.cli._parser import build_parser


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    # No scheduler listens there: printing a script must not need one.
    code = main(["--scheduler", "127.0.0.1:1", "completion", shell], environ={})
    captured = capsys.readouterr()
    assert code == ExitCode.OK, captured.err
    return captured.out


def _bash_complete(script: Path, *words: str) -> list[str]:
    """What ``_taskctl`` offers with the cursor at the end of ``words`` (the last one being
    the word under the cursor, empty for a new one)."""
    quoted = " ".join(f"'{word}'" for word in words)
    program = (
        f"source {script}\n"
        f"COMP_WORDS=(taskctl {quoted}); COMP_CWORD={len(words)}\n"
        "_taskctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.fixture
def bash_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "taskctl.bash"
    path.write_text(_script("bash", capsys))
    return path


def test_bash_accepts_the_script(bash_script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(bash_script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "complete -F _taskctl taskctl" in bash_script.read_text()


def test_bash_completes_command_names(bash_script: Path) -> None:
    assert _bash_complete(bash_script, "cre") == ["create"]
    assert _bash_complete(bash_script, "sch") == ["schedule"]
    # Global options and their values are skipped on the way to the command.
    assert _bash_complete(bash_script, "--scheduler", "h:1", "--json", "wa") == ["watch"]


def test_bash_offers_every_command_of_the_parser(bash_script: Path) -> None:
    parser = build_parser({})
    commands = next(a for a in parser._actions if a.dest == "command")
    assert commands.choices is not None
    assert set(_bash_complete(bash_script, "")) == set(commands.choices)


def test_bash_completes_actions_flags_and_values(bash_script: Path, tmp_path: Path) -> None:
    assert _bash_complete(bash_script, "schedule", "c") == ["create"]
    assert _bash_complete(bash_script, "create", "foo", "--wa") == ["--wait", "--wait-timeout"]
    assert "--catch-up" in _bash_complete(bash_script, "schedule", "create", "--")
    assert "--catch-up" not in _bash_complete(bash_script, "create", "--")
    assert _bash_complete(bash_script, "--tim") == ["--timeout"]
    assert _bash_complete(bash_script, "create", "--on-failure", "") == ["block", "skip"]
    assert _bash_complete(bash_script, "list", "--state", "fa") == ["failed"]
    assert _bash_complete(bash_script, "completion", "") == ["bash", "zsh", "fish"]
    (tmp_path / "rows.csv").write_text("task_id,task_type\n")
    assert _bash_complete(bash_script, "batch", str(tmp_path / "rows.")) == [
        str(tmp_path / "rows.csv")
    ]
    assert _bash_complete(bash_script, "--tls-ca", str(tmp_path / "rows")) == [
        str(tmp_path / "rows.csv")
    ]
    # An option's value is not taken for a command name: still at the top level.
    top_level = _bash_complete(bash_script, "")
    assert _bash_complete(bash_script, "--client-id", "create", "") == top_level


def test_an_unknown_shell_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "tcsh"], environ={}) == ExitCode.USAGE
    assert "invalid choice: 'tcsh'" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_accepts_the_script_and_completes_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "_taskctl"
    script.write_text(_script("zsh", capsys))
    assert subprocess.run(["zsh", "-n", str(script)], check=False).returncode == 0
    # Outside a completion widget: the completion system's functions stand in as printers.
    program = f"""
        compdef() {{ : }}
        compadd() {{ shift; print -r -- "offered: $*" }}
        _describe() {{ print -rl -- "${{(P)4[@]}}" }}
        _files() {{ print -r -- files }}
        source {script}
        words=(taskctl schedule ''); CURRENT=3; _taskctl
        words=(taskctl create --on-failure ''); CURRENT=4; _taskctl
    """
    done = subprocess.run(
        ["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "create:create a schedule" in done.stdout.splitlines()
    assert "offered: block skip" in done.stdout


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_accepts_the_script_and_completes_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "taskctl.fish"
    script.write_text(_script("fish", capsys))
    assert subprocess.run(["fish", "--no-execute", str(script)], check=False).returncode == 0
    program = (
        f"source {script}; "
        "complete -C 'taskctl cre'; "
        "complete -C 'taskctl schedule create --catch-up '"
    )
    done = subprocess.run(
        ["fish", "--no-config", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    offered = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert offered == ["create", "all", "latest", "skip"]
