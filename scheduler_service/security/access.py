"""Who may call what: the method table, the caller, and the guard that checks every call.

Deny by default: :data:`RULES` names every method of every service the scheduler registers
(``tests/unit/scheduler/test_access.py`` walks the descriptors, and the server refuses to
start with a method that has no rule). A call is checked before its request is decoded:

- a method whose rule is ``open`` (the gRPC health service) needs no credentials;
- otherwise the caller presents ``authorization: Bearer <token>`` (a token of the
  ``--auth-tokens`` table), or, with ``--tls-client-ca``, a client certificate whose subject
  ``OU`` names a role (``OU=client|worker|admin``; its ``CN`` is the principal). A token wins
  over the certificate for the role and principal. Missing or unknown credentials are
  ``UNAUTHENTICATED``; a role the method does not allow is ``PERMISSION_DENIED``.

With neither tokens nor client certificates configured, authentication is off: every call
is allowed, as an admin, and a client names itself with the ``orchestrator-client`` header.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from .tokens import Identity, Role, TokenTable, check_principal

log = logging.getLogger(__name__)

AUTHORIZATION_KEY = "authorization"
_BEARER = "bearer "


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]
    #: Anyone may call, with or without credentials.
    open: bool = False


_CLIENTS = Rule(frozenset({Role.CLIENT, Role.ADMIN}))
_WORKERS = Rule(frozenset({Role.WORKER, Role.ADMIN}))
_ADMINS = Rule(frozenset({Role.ADMIN}))
_AUTHENTICATED = Rule(frozenset(Role))
_OPEN = Rule(frozenset(Role), open=True)


def _service(name: str, rule: Rule, methods: Sequence[str]) -> dict[str, Rule]:
    return {f"/{name}/{method}": rule for method in methods}


#: Full method name -> who may call it. Every registered method must be here.
RULES: Mapping[str, Rule] = {
    # Clients act on their own tasks (see TaskServicer for tenancy); admins on every task.
    **_service(
        "orchestrator.v1.TaskService",
        _CLIENTS,
        [
            "CreateTask",
            "BatchCreateTasks",
            "GetTask",
            "ListTasks",
            "DeleteTask",
            "DeleteTasks",
            "CancelTask",
            "RetryTask",
            "WatchTask",
            "WatchTasks",
            "ExplainTask",
            "RunTask",
        ],
    ),
    **_service("orchestrator.v1.WorkerService", _WORKERS, ["Connect"]),
    **_service(
        "orchestrator.v1.AdminService",
        _ADMINS,
        [
            "ListTaskTypes",
            "PauseTaskType",
            "ResumeTaskType",
            "SetTaskTypeLimits",
            "CreateSchedule",
            "GetSchedule",
            "ListSchedules",
            "DeleteSchedule",
            "PauseSchedule",
            "ResumeSchedule",
            "ListWorkers",
            "GetStats",
        ],
    ),
    # Load balancers and orchestrators probe health without credentials.
    **_service("grpc.health.v1.Health", _OPEN, ["Check", "List", "Watch"]),
    # Reflection describes the public contract: any authenticated caller may read it.
    **_service(
        "grpc.reflection.v1alpha.ServerReflection", _AUTHENTICATED, ["ServerReflectionInfo"]
    ),
}


def method_names(service: ServiceDescriptor) -> list[str]:
    return [f"/{service.full_name}/{method.name}" for method in service.methods]


def missing_rules(services: Iterable[ServiceDescriptor], rules: Mapping[str, Rule]) -> list[str]:
    """Registered methods without a rule (which the guard would refuse anyway)."""
    return [name for service in services for name in method_names(service) if name not in rules]


@dataclass(frozen=True)
class Caller:
    """Who is calling, decided once per call by the :class:`Guard` and passed down."""

    principal: str
    role: Role
    #: False when authentication is off (everyone is an admin then).
    authenticated: bool = False
    #: The verified client certificate's common name ("" without one).
    certificate: str = ""

    @property
    def tenant(self) -> str | None:
        """The client whose tasks alone this caller may see; None for every task."""
        return self.principal if self.authenticated and self.role is Role.CLIENT else None


#: Authentication off: every call may do everything.
UNAUTHENTICATED_ADMIN = Caller(principal="", role=Role.ADMIN)
#: A call to an open method by someone without credentials.
ANONYMOUS = Caller(principal="", role=Role.CLIENT, authenticated=False)


class AccessDenied(Exception):
    """A call is refused; ``code`` is UNAUTHENTICATED or PERMISSION_DENIED."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


AuthContext = Mapping[str, Iterable[bytes]]


def parse_subject(subject: str) -> dict[str, str]:
    """``OU=worker,CN=w1`` (RFC 4514, as gRPC reports it) -> ``{"OU": "worker", "CN": "w1"}``.

    Escaped separators (``\\,``) stay in the value; for a repeated attribute the first wins.
    """
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in subject:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",+":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    found: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if sep:
            found.setdefault(key.strip().upper(), value.strip())
    return found


def _first(auth: AuthContext, key: str) -> str:
    for value in auth.get(key) or ():
        return value.decode(errors="replace")
    return ""


class Guard:
    """Checks each call against :data:`RULES` with the configured credentials."""

    def __init__(
        self,
        tokens: TokenTable | None = None,
        *,
        client_certificates: bool = False,
        rules: Mapping[str, Rule] = RULES,
    ) -> None:
        self.tokens = tokens
        self.client_certificates = client_certificates
        self.rules = rules

    @property
    def enabled(self) -> bool:
        return self.tokens is not None or self.client_certificates

    def check(
        self, method: str, metadata: Iterable[tuple[str, str | bytes]], auth: AuthContext
    ) -> Caller:
        """The caller of ``method``, or :class:`AccessDenied`."""
        rule = self.rules.get(method)
        if rule is None:  # deny by default (the server also refuses to start like this)
            raise AccessDenied(grpc.StatusCode.PERMISSION_DENIED, f"{method} is not allowed")
        if not self.enabled:
            return UNAUTHENTICATED_ADMIN
        if rule.open:
            return ANONYMOUS
        certificate = _first(auth, "x509_common_name") if self.client_certificates else ""
        identity = self._identity(metadata, auth, certificate)
        caller = Caller(identity.principal, identity.role, True, certificate)
        if caller.role not in rule.roles:
            allowed = " or ".join(sorted(r.value for r in rule.roles))
            raise AccessDenied(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method} needs the role {allowed}; {caller.principal} is {caller.role.value}",
            )
        return caller

    def _identity(
        self, metadata: Iterable[tuple[str, str | bytes]], auth: AuthContext, certificate: str
    ) -> Identity:
        header = bearer_value(metadata)
        if header is not None:
            if self.tokens is None:
                raise AccessDenied(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "this scheduler takes no tokens; authenticate with a client certificate",
                )
            if not header.lower().startswith(_BEARER):
                raise AccessDenied(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "the authorization metadata must be 'Bearer <token>'",
                )
            identity = self.tokens.lookup(header[len(_BEARER) :].strip())
            if identity is None:
                raise AccessDenied(grpc.StatusCode.UNAUTHENTICATED, "invalid token")
            return identity
        if certificate:
            return certificate_identity(auth, certificate)
        raise AccessDenied(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing credentials: send the metadata 'authorization: Bearer <token>'"
            + (" or a client certificate" if self.client_certificates else ""),
        )


def certificate_identity(auth: AuthContext, certificate: str) -> Identity:
    """The identity a verified client certificate carries: CN the principal, OU the role."""
    problem = check_principal(certificate)
    if problem:
        raise AccessDenied(grpc.StatusCode.PERMISSION_DENIED, f"client certificate: {problem}")
    unit = parse_subject(_first(auth, "x509_subject")).get("OU", "")
    try:
        role = Role(unit.lower())
    except ValueError:
        raise AccessDenied(
            grpc.StatusCode.PERMISSION_DENIED,
            f"the client certificate of {certificate} names no role: its subject needs "
            "OU=client, OU=worker or OU=admin (or send a token)",
        ) from None
    return Identity(certificate, role)


def bearer_value(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The ``authorization`` metadata value, or None."""
    for key, value in metadata:
        if key == AUTHORIZATION_KEY:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None
