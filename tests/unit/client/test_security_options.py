"""Tokens and TLS on the client side: AsyncClient/Client, taskctl and worker options."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator_client import AsyncClient, Client, TlsConfig
from orchestrator_client.channel import call_metadata
from orchestrator_client.cli import tls_config
from orchestrator_client.cli._parser import build_parser
from worker_service.config import WorkerConfig

TOKEN = "client-token-0123456789abcdef"


def test_a_token_is_plain_metadata_only_on_an_insecure_channel() -> None:
    assert call_metadata(TOKEN, None) == (("authorization", f"Bearer {TOKEN}"),)
    assert call_metadata(TOKEN, TlsConfig()) == ()  # call credentials carry it
    assert call_metadata(None, None) == ()


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        TlsConfig(cert_file="c.pem")


def test_the_clients_never_show_their_token() -> None:
    client = AsyncClient("h:1", token=TOKEN, tls=True)
    assert client.tls == TlsConfig()
    assert TOKEN not in repr(client)
    assert AsyncClient("h:1", token=TOKEN).tls is None
    sync = Client("h:1", token=TOKEN)
    assert TOKEN not in repr(sync)


def test_taskctl_security_options_and_their_variables() -> None:
    args = build_parser({}).parse_args(["list"])
    assert args.token == "" and tls_config(args) is None
    env = {
        "ORCHESTRATOR_TOKEN": TOKEN,
        "ORCHESTRATOR_TLS_CA": "ca.pem",
        "ORCHESTRATOR_TLS_SERVER_NAME": "scheduler.test",
    }
    args = build_parser(env).parse_args(["--tls-cert", "c.pem", "--tls-key", "k.pem", "list"])
    assert args.token == TOKEN
    assert tls_config(args) == TlsConfig("ca.pem", "c.pem", "k.pem", "scheduler.test")
    assert tls_config(build_parser({}).parse_args(["--tls", "list"])) == TlsConfig()
    with pytest.raises(ValueError):
        tls_config(build_parser({}).parse_args(["--tls-cert", "c.pem", "list"]))


def test_worker_security_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    config = WorkerConfig.from_args(
        ["--tls-ca", str(ca), "--tls-server-name", "s"], {"ORCHESTRATOR_TOKEN": TOKEN}
    )
    assert config.token == TOKEN and config.tls == TlsConfig(str(ca), None, None, "s")
    assert TOKEN not in repr(config)
    plain = WorkerConfig.from_args([], {})
    assert plain.tls is None and plain.token == ""
    for argv, needle in (
        (["--tls-ca", str(tmp_path / "missing.pem")], "no such file"),
        (["--tls-cert", str(ca)], "needs both cert_file and key_file"),
    ):
        with pytest.raises(SystemExit) as raised:
            WorkerConfig.from_args(argv, {})
        assert raised.value.code == 2
        assert needle in capsys.readouterr().err
