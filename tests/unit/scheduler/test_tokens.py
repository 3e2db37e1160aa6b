"""The tokens file: its format, its refusals (which never quote a token), and lookups that
compare against every entry in constant time."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import pytest

from scheduler_service.config import SchedulerConfig
from scheduler_service.security import tokens as tokens_module
from scheduler_service.security.tokens import Identity, Role, TokenFileError, TokenTable

ALICE = "alice-token-0123456789abcdef"
WORKERS = "worker-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdefgh"

GOOD = f"""
# token                          role    principal
{ALICE}   client  alice
\t{WORKERS}\tworker\tworkers

   # an indented comment
{ADMIN} ADMIN ops@example
"""


def test_a_good_file_maps_each_token_to_its_principal_and_role() -> None:
    table = TokenTable.parse(GOOD, "tokens")
    assert len(table) == 3
    assert table.lookup(ALICE) == Identity("alice", Role.CLIENT)
    assert table.lookup(WORKERS) == Identity("workers", Role.WORKER)
    assert table.lookup(ADMIN) == Identity("ops@example", Role.ADMIN)
    assert table.lookup("") is None
    assert table.lookup(ALICE + "x") is None
    assert table.lookup(ALICE[:-1]) is None
    assert table.roles() == set(Role)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (f"{ALICE} client", "line 1: expected 'TOKEN ROLE PRINCIPAL' (3 fields), got 2"),
        (f"{ALICE} client alice extra", "got 4"),
        ("short client alice", "line 1: the token must be 16 to 4096 characters"),
        (f"# c\n{ALICE} owner alice", "line 2: unknown role 'owner'; roles are client"),
        (f"{ALICE} client -alice", "line 1: the principal '-alice' must start with"),
        (f"{ALICE} client {'a' * 129}", "the principal must be 1 to 128 characters"),
        (f"{ALICE} client alice\n{ALICE} admin ops", "line 2: the same token appears twice"),
        ("# nothing\n\n", "no tokens"),
        (f"{ALICE}\u00e9 client alice", "printable ASCII"),
    ],
)
def test_a_bad_file_names_the_line_and_never_the_token(text: str, needle: str) -> None:
    with pytest.raises(TokenFileError) as raised:
        TokenTable.parse(text, "tokens")
    assert needle in str(raised.value)
    assert ALICE not in str(raised.value)


def test_the_table_never_shows_its_tokens() -> None:
    table = TokenTable.parse(GOOD, "tokens")
    assert repr(table) == "TokenTable(3 tokens)"
    config = SchedulerConfig(auth_tokens=table)
    assert ALICE not in repr(config) and "TokenTable" not in repr(config)


@pytest.mark.parametrize("presented", [ALICE, ADMIN, "wrong-but-long-enough-0000", "x", ""])
def test_lookup_compares_with_every_entry_in_constant_time(
    presented: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hmac.compare_digest runs once per entry, on equal-length digests, whether the token
    matches the first entry, the last, or none, and whatever its length."""
    table = TokenTable.parse(GOOD, "tokens")
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", counting)
    table.lookup(presented)
    assert calls == [(32, 32)] * 3


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(GOOD)
    os.chmod(path, 0o644)
    with pytest.raises(TokenFileError, match=r"mode 0644\); run: chmod 600"):
        TokenTable.read(str(path))
    os.chmod(path, 0o600)
    assert len(TokenTable.read(str(path))) == 3
    with pytest.raises(TokenFileError, match="No such file"):
        TokenTable.read(str(tmp_path / "missing"))


def test_tokens_come_from_the_flag_or_the_variable_and_the_flag_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, f"{ADMIN} admin from-file\n".encode())
    os.close(fd)
    env = {"ORCHESTRATOR_AUTH_TOKENS": f"{ALICE} client from-env\n"}
    from_env = SchedulerConfig.from_args([], env).auth_tokens
    assert from_env is not None and from_env.lookup(ALICE) == Identity("from-env", Role.CLIENT)
    from_file = SchedulerConfig.from_args(["--auth-tokens", str(path)], env).auth_tokens
    assert from_file is not None and from_file.lookup(ALICE) is None
    assert from_file.lookup(ADMIN) == Identity("from-file", Role.ADMIN)
    assert SchedulerConfig.from_args([], {}).auth_tokens is None

    with pytest.raises(SystemExit) as raised:
        SchedulerConfig.from_args([], {"ORCHESTRATOR_AUTH_TOKENS": f"{ALICE} root alice"})
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "ORCHESTRATOR_AUTH_TOKENS line 1: unknown role 'root'" in err
    assert ALICE not in err
