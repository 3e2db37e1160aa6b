"""Listening beyond loopback needs authentication and TLS, or --insecure; the limits flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler_service.config import SchedulerConfig
from scheduler_service.security.exposure import exposure_problem, is_loopback
from tests.support.pki import CertificateAuthority

TOKENS = {"ORCHESTRATOR_AUTH_TOKENS": "admin-token-0123456789abc admin ops"}


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:50051", "127.8.9.10:1", "localhost:50051", "LOCALHOST:1", "[::1]:50051", "::1:5"],
)
def test_loopback_addresses(address: str) -> None:
    assert is_loopback(address)


@pytest.mark.parametrize(
    "address",
    ["0.0.0.0:50051", "[::]:50051", ":50051", "10.0.0.5:50051", "scheduler:50051", "[::ffff:1]:1"],
)
def test_exposed_addresses(address: str) -> None:
    assert not is_loopback(address)


def test_the_rule() -> None:
    def problem(**flags: bool) -> str | None:
        options = {"authenticated": False, "tls": False, "insecure": False, **flags}
        return exposure_problem("gRPC", "0.0.0.0:50051", **options)

    assert problem() is not None and "--insecure" in (problem() or "")
    assert "TLS" in (problem(authenticated=True) or "")
    assert "authentication" in (problem(tls=True) or "")
    assert problem(authenticated=True, tls=True) is None
    assert problem(insecure=True) is None
    assert (
        exposure_problem("gRPC", "127.0.0.1:1", authenticated=False, tls=False, insecure=False)
        is None
    )


def refusal(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as raised:
        SchedulerConfig.from_args(argv, env)
    assert raised.value.code == 2
    return capsys.readouterr().err


def test_the_scheduler_refuses_an_exposed_listener_without_auth(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = refusal(["--listen", "0.0.0.0:50051"], {}, capsys)
    assert "refusing to listen on 0.0.0.0:50051 (gRPC, not a loopback address)" in err
    assert "--insecure" in err
    err = refusal(["--http-listen", "0.0.0.0:8080"], {}, capsys)
    assert "refusing to listen on 0.0.0.0:8080 (HTTP" in err
    # Tokens alone are not enough beyond loopback: they would cross the network in clear.
    err = refusal(["--listen", "0.0.0.0:50051"], TOKENS, capsys)
    assert "without TLS (--tls-cert and --tls-key)" in err
    # The Dockerfile's variables, without security, are refused the same way.
    err = refusal([], {"ORCHESTRATOR_LISTEN": "0.0.0.0:50051"}, capsys)
    assert "refusing to listen" in err


def test_an_exposed_listener_with_auth_and_tls_or_insecure_is_accepted(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    server = ca.server()
    tls = ["--tls-cert", str(server.cert), "--tls-key", str(server.key)]
    exposed = ["--listen", "0.0.0.0:50051", "--http-listen", "[::]:8080"]
    config = SchedulerConfig.from_args([*exposed, *tls], TOKENS)
    assert config.authenticated and config.tls is not None and not config.tls.mutual
    mutual = SchedulerConfig.from_args([*exposed, *tls, "--tls-client-ca", str(ca.cert)], {})
    assert mutual.authenticated and mutual.tls is not None and mutual.tls.mutual
    assert SchedulerConfig.from_args([*exposed, "--insecure"], {}).insecure
    assert SchedulerConfig.from_args(
        ["--listen", "0.0.0.0:1", "--http-listen", "off"], {"ORCHESTRATOR_INSECURE": "1"}
    ).insecure
    # The HTTP side off: only the gRPC listener counts.
    SchedulerConfig.from_args(["--http-listen", "off", "--listen", "127.0.0.1:1"], {})


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--tls-cert", "a.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert"),
        (["--tls-cert", "/nonexistent/a", "--tls-key", "/nonexistent/b"], "no such file"),
        (["--max-message-bytes", "1000"], "--max-message-bytes must be above"),
        (["--max-concurrent-streams", "0"], "--max-concurrent-streams must be at least 1"),
        (["--max-concurrent-rpcs", "0"], "--max-concurrent-rpcs must be at least 1"),
    ],
)
def test_bad_security_and_limits_flags(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert needle in refusal(argv, {}, capsys)


def test_limits_flags() -> None:
    config = SchedulerConfig.from_args(
        [
            "--max-message-bytes",
            "4194304",
            "--max-concurrent-streams",
            "64",
            "--max-concurrent-rpcs",
            "500",
        ],
        {},
    )
    assert (config.max_message_bytes, config.max_concurrent_streams) == (4194304, 64)
    assert config.max_concurrent_rpcs == 500
    defaults = SchedulerConfig.from_args([], {})
    assert defaults.max_message_bytes == 16 * 1024 * 1024
    assert (defaults.max_concurrent_streams, defaults.max_concurrent_rpcs) == (1000, 10_000)
