"""Deny by default: every method of every registered service has an access rule, and the
guard turns credentials into a caller or the right refusal."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from orchestrator.v1 import admin_service_pb2, task_service_pb2, worker_service_pb2
from scheduler_service.api import server
from scheduler_service.security.access import (
    RULES,
    AccessDenied,
    Caller,
    Guard,
    Rule,
    method_names,
    parse_subject,
)
from scheduler_service.security.tokens import Identity, Role, TokenTable

DESCRIPTORS = [
    task_service_pb2.DESCRIPTOR.services_by_name["TaskService"],
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"],
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
]
TOKENS = {
    "client-token-aaaaaaaaaaaaaaaa": Identity("alice", Role.CLIENT),
    "worker-token-wwwwwwwwwwwwwwww": Identity("workers", Role.WORKER),
    "admin-token-zzzzzzzzzzzzzzzzz": Identity("ops", Role.ADMIN),
}


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
def guard() -> Guard:
    return Guard(TokenTable(TOKENS.items()))


def test_the_server_registers_exactly_these_services() -> None:
    assert [s.full_name for s in server.REGISTERED_SERVICES] == [s.full_name for s in DESCRIPTORS]


@pytest.mark.parametrize("service", DESCRIPTORS, ids=lambda s: s.full_name)
def test_every_method_of_every_service_has_a_rule(service: Any) -> None:
    missing = [name for name in method_names(service) if name not in RULES]
    assert not missing, f"methods without an access rule (add them to RULES): {missing}"


def test_the_table_holds_no_rule_for_a_method_that_does_not_exist() -> None:
    known = {name for service in DESCRIPTORS for name in method_names(service)}
    assert set(RULES) == known


def test_the_roles_of_the_table() -> None:
    def roles(name: str) -> set[str]:
        return {r.value for r in RULES[name].roles}

    assert roles("/orchestrator.v1.TaskService/GetTask") == {"client", "admin"}
    assert roles("/orchestrator.v1.WorkerService/Connect") == {"worker", "admin"}
    assert roles("/orchestrator.v1.AdminService/CreateSchedule") == {"admin"}
    assert RULES["/grpc.health.v1.Health/Check"].open
    reflection = RULES["/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"]
    assert not reflection.open and roles(reflection_name()) == {"client", "worker", "admin"}


def reflection_name() -> str:
    return "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


async def test_the_server_refuses_to_start_with_a_method_without_a_rule() -> None:
    rules = dict(RULES)
    del rules["/orchestrator.v1.TaskService/RunTask"]
    with pytest.raises(RuntimeError, match="TaskService/RunTask"):
        server.GrpcServer(object(), object(), object(), guard=Guard(rules=rules))  # type: ignore[arg-type]


def test_without_authentication_everyone_is_an_unauthenticated_admin() -> None:
    caller = Guard().check("/orchestrator.v1.AdminService/GetStats", [], {})
    assert caller == Caller("", Role.ADMIN, authenticated=False)
    assert caller.tenant is None


def test_a_token_gives_principal_and_role(guard: Guard) -> None:
    caller = guard.check(
        "/orchestrator.v1.TaskService/GetTask", bearer("client-token-aaaaaaaaaaaaaaaa"), {}
    )
    assert caller == Caller("alice", Role.CLIENT, authenticated=True)
    assert caller.tenant == "alice"
    admin = guard.check(
        "/orchestrator.v1.TaskService/GetTask", bearer("admin-token-zzzzzzzzzzzzzzzzz"), {}
    )
    assert admin.tenant is None


@pytest.mark.parametrize(
    ("metadata", "code", "message"),
    [
        ([], "UNAUTHENTICATED", "missing credentials"),
        (bearer("not-a-known-token-at-all"), "UNAUTHENTICATED", "invalid token"),
        ([("authorization", "Basic abc")], "UNAUTHENTICATED", "must be 'Bearer <token>'"),
        (bearer("worker-token-wwwwwwwwwwwwwwww"), "PERMISSION_DENIED", "needs the role admin"),
        (bearer("client-token-aaaaaaaaaaaaaaaa"), "PERMISSION_DENIED", "alice is client"),
    ],
)
def test_refusals(guard: Guard, metadata: list[tuple[str, str]], code: str, message: str) -> None:
    with pytest.raises(AccessDenied) as raised:
        guard.check("/orchestrator.v1.AdminService/GetStats", metadata, {})
    assert raised.value.code == getattr(grpc.StatusCode, code)
    assert message in raised.value.message
    assert "token-" not in raised.value.message


def test_health_is_open_and_reflection_needs_any_role(guard: Guard) -> None:
    assert not guard.check("/grpc.health.v1.Health/Check", [], {}).authenticated
    with pytest.raises(AccessDenied):
        guard.check(reflection_name(), [], {})
    for token in TOKENS:
        assert guard.check(reflection_name(), bearer(token), {}).authenticated


def test_an_unknown_method_is_denied(guard: Guard) -> None:
    with pytest.raises(AccessDenied) as raised:
        Guard(rules={}).check("/x.Y/Z", [], {})
    assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED


def cert(common_name: str, subject: str) -> dict[str, list[bytes]]:
    return {"x509_common_name": [common_name.encode()], "x509_subject": [subject.encode()]}


def test_a_client_certificate_gives_cn_as_principal_and_ou_as_role() -> None:
    guard = Guard(client_certificates=True)
    caller = guard.check(
        "/orchestrator.v1.WorkerService/Connect", [], cert("w1", "OU=worker,CN=w1")
    )
    assert caller == Caller("w1", Role.WORKER, authenticated=True, certificate="w1")
    with pytest.raises(AccessDenied, match="names no role"):
        guard.check("/orchestrator.v1.TaskService/GetTask", [], cert("w1", "CN=w1"))
    with pytest.raises(AccessDenied) as raised:
        guard.check("/orchestrator.v1.TaskService/GetTask", [], cert("w1", "OU=worker,CN=w1"))
    assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED
    # Without tokens configured, a bearer header cannot authenticate anyone.
    with pytest.raises(AccessDenied, match="takes no tokens"):
        guard.check("/orchestrator.v1.TaskService/GetTask", bearer("x" * 20), cert("a", "CN=a"))


def test_a_token_wins_over_the_certificate_but_the_certificate_stays_known() -> None:
    guard = Guard(TokenTable(TOKENS.items()), client_certificates=True)
    caller = guard.check(
        "/orchestrator.v1.TaskService/GetTask",
        bearer("client-token-aaaaaaaaaaaaaaaa"),
        cert("w1", "OU=worker,CN=w1"),
    )
    assert caller == Caller("alice", Role.CLIENT, authenticated=True, certificate="w1")


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("OU=worker,CN=w1", {"OU": "worker", "CN": "w1"}),
        ("CN=a\\,b,OU=admin,O=Acme", {"CN": "a,b", "OU": "admin", "O": "Acme"}),
        ("OU=client+CN=x", {"OU": "client", "CN": "x"}),
        ("OU=first,OU=second", {"OU": "first"}),
        ("", {}),
    ],
)
def test_subjects_are_parsed(subject: str, expected: dict[str, str]) -> None:
    assert parse_subject(subject) == expected


def test_a_custom_rule_set_is_honoured() -> None:
    guard = Guard(TokenTable(TOKENS.items()), rules={"/m": Rule(frozenset({Role.WORKER}))})
    assert guard.check("/m", bearer("worker-token-wwwwwwwwwwwwwwww"), {}).role is Role.WORKER
