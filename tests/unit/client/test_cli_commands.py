"""Command logic that needs no scheduler: refusals and confirmations happen before a call.

The client points at an address nothing listens on; a test that reached it would fail
with UNAVAILABLE rather than pass by accident.
"""

from __future__ import annotations

import io

import pytest

import orchestrator_client as oc
from orchestrator_client.cli._commands import Context, _backoff, create, delete_all, limits
from orchestrator_client.cli._exit import ExitCode, UsageError
from orchestrator_client.cli._output import Output
from orchestrator_client.cli._parser import build_parser


def context(answer: bool | None) -> tuple[Context, list[str], io.StringIO]:
    questions: list[str] = []

    async def confirm(question: str) -> bool:
        questions.append(question)
        assert answer is not None
        return answer

    stdout = io.StringIO()
    out = Output(json_mode=False, stdout=stdout, stderr=io.StringIO())
    client = oc.AsyncClient("127.0.0.1:1", retries=0)
    return Context(client, out, None if answer is None else confirm), questions, stdout


async def test_declining_the_question_deletes_nothing() -> None:
    ctx, questions, stdout = context(answer=False)
    args = build_parser({}).parse_args(["delete-all", "--state", "failed"])
    assert await delete_all(ctx, args) == ExitCode.OK
    assert questions == ["Delete every task matching these filters? [y/N] "]
    assert stdout.getvalue() == "nothing deleted\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["delete-all"], "give a filter"),
        (["delete-all", "--all"], "add --yes"),
        (["delete-all", "--all", "--state", "failed", "--yes"], "cannot be combined"),
    ],
)
async def test_delete_all_refusals(argv: list[str], message: str) -> None:
    ctx, questions, _ = context(answer=True)
    with pytest.raises(UsageError, match=message):
        await delete_all(ctx, build_parser({}).parse_args(argv))
    assert questions == []


async def test_without_a_terminal_delete_all_needs_yes() -> None:
    ctx, _, _ = context(answer=None)
    args = build_parser({}).parse_args(["delete-all", "--type", "foo"])
    with pytest.raises(UsageError, match="--yes"):
        await delete_all(ctx, args)


def test_backoff_only_when_an_option_is_given() -> None:
    parser = build_parser({})
    assert _backoff(parser.parse_args(["create", "foo"])) is None
    given = _backoff(parser.parse_args(["create", "foo", "--backoff-jitter", "0"]))
    assert given == oc.Backoff(jitter=0.0)


def test_json_switch_after_the_command() -> None:
    parser = build_parser({})
    assert parser.parse_args(["list", "--no-json"]).json is False
    assert parser.parse_args(["--no-json", "list", "--json"]).json is True
    assert parser.parse_args(["--no-json", "list"]).json is False


async def test_limits_without_a_flag_is_refused() -> None:
    ctx, _, _ = context(answer=None)
    with pytest.raises(UsageError, match="0 removes a limit"):
        await limits(ctx, build_parser({}).parse_args(["limits", "foo"]))


@pytest.mark.parametrize("flag", ["--key-max-running", "--key-max-per-second"])
async def test_key_limits_without_a_key_are_refused(flag: str) -> None:
    ctx, _, _ = context(answer=None)
    args = build_parser({}).parse_args(["create", "foo", flag, "1"])
    with pytest.raises(UsageError, match="need --concurrency-key"):
        await create(ctx, args)
