"""Hostile input, generated: every field of every TaskService and AdminService request, raw
bytes to every method, and junk on the TCP ports.

Requests are built from the protobuf descriptors, so every field of every request message
gets arbitrary values of its type: unicode and huge strings, negative and huge numbers, NaN
and infinities, enum numbers nobody defined, nested structs (deeper than protobuf's
recursion limit too), timestamps and durations far out of range — mixed with plausible values
(known task types, existing task ids, valid crons and time zones) so that generated requests
also get past the first check. After each example:

- the status is never UNKNOWN or INTERNAL, and no error detail carries a traceback;
- the scheduler process is alive and its Health check answers SERVING;
- nothing is half-written: the set of tasks changes only by what a successful create made
  (or a successful delete removed).

Raw bytes go to every method path through a channel without serializers: bytes that are not
a valid request get INVALID_ARGUMENT; unknown paths UNIMPLEMENTED; with authentication on,
a call without credentials is UNAUTHENTICATED whatever its bytes. Junk written to the gRPC
and HTTP ports (with and without an HTTP/2 preface) crashes nothing.

Example counts follow the profile: 50 per RPC in the short profile (the same ones every
run), 500 new ones in the long one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2, worker_service_pb2
from tests.faults.profile import current
from tests.support.processes import SchedulerProcess, scheduler_args
from tests.support.secure import write_tokens

TASK_SERVICE = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"]
ADMIN_SERVICE = admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"]
WORKER_SERVICE = worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"]
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"]
FUZZED = [*TASK_SERVICE.methods, *ADMIN_SERVICE.methods]
EVERY_METHOD = [*FUZZED, *WORKER_SERVICE.methods, *HEALTH_SERVICE.methods]
KNOWN_TYPES = ("foo", "sum2")
CREATES = {"CreateTask", "BatchCreateTasks"}
DELETES = {"DeleteTask", "DeleteTasks"}
NEVER = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ADMIN_TOKEN = "hostile-admin-token-0123456789abcdef"

SHORT = current().name == "short"
EXAMPLES = 50 if SHORT else 500
FUZZ = settings(
    max_examples=EXAMPLES,
    # CI's short profile replays the same examples every run (seeded by the test's name), so
    # a red run is reproducible and a green one is not luck; the long profile explores anew.
    derandomize=SHORT,
    deadline=None,
    database=None,  # nothing written into the checkout; failures print their example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the scheduler under attack ---------------------------------------------------------


@dataclass
class Target:
    process: SchedulerProcess
    database: Path
    channel: grpc.Channel
    health: health_pb2_grpc.HealthStub

    @property
    def grpc_port(self) -> int:
        return int(self.process.grpc_address.rpartition(":")[2])

    @property
    def http_port(self) -> int:
        return int(self.process.http_address.rpartition(":")[2])

    def assert_serving(self, after: str) -> None:
        assert self.process.running, f"the scheduler died after {after}\n{self.process.dump()}"
        answer = self.health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, after


def _start(tmp: Path, name: str, *extra: str) -> Iterator[Target]:
    database = tmp / f"{name}.db"
    process = SchedulerProcess(
        name,
        scheduler_args(
            database, "--task-types", ",".join(KNOWN_TYPES), "--log-level", "info", *extra
        ),
        tmp,
        env=None,
    )
    try:
        asyncio.run(process.wait_ready())
        channel = grpc.insecure_channel(process.grpc_address)
        try:
            yield Target(process, database, channel, health_pb2_grpc.HealthStub(channel))
        finally:
            channel.close()
    finally:
        process.terminate(15)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from _start(tmp_path_factory.mktemp("hostile"), "hostile")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A scheduler with authentication on (an admin token only)."""
    tmp = tmp_path_factory.mktemp("hostile-auth")
    tokens = write_tokens(tmp / "tokens", {ADMIN_TOKEN: ("admin", "ops")})
    yield from _start(tmp, "hostile-auth", "--auth-tokens", str(tokens))


def task_ids(database: Path) -> set[str]:
    """Every task id, without the tasks that schedules fire by themselves."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT id FROM tasks WHERE idempotency_key NOT LIKE 'schedule:%'")
        return {row[0] for row in rows}
    finally:
        conn.close()


# -- strategies from descriptors ------------------------------------------------------------

INTERESTING = [
    "", " ", "foo", "sum2", "fooo", "FOO", "foo bar", "a" * 128, "a" * 129, "é", "\u0000",
    "\u202e", "\U0001f600", "../../etc/passwd", "'; DROP TABLE tasks; --", "%s%n%x",
    "01ARZ3NDEKTSV4RRFFQ69G5FAV", "0" * 26, "created_at asc", "created_at desc",
    "priority asc", "nonsense desc", "* * * * *", "0 3 * * *", "*/1 * * * * *", "61 * * * *",
    "UTC", "Europe/Berlin", "Mars/Olympus", "America", "Etc", "TASK_STATE_FAILED", "schedule",
    "batch",
    "eyJhZnRlciI6IngiLCJmcCI6InRhc2tzIn0", "null", "{}", "[]", "NaN",
]  # fmt: skip
INT32 = st.one_of(
    st.sampled_from([0, 1, -1, 1000, 1001, 2**31 - 1, -(2**31)]),
    st.integers(-(2**31), 2**31 - 1),
)
INT64 = st.one_of(
    st.sampled_from([0, -1, 2**63 - 1, -(2**63), 253402300799, -62135596801]),
    st.integers(-(2**63), 2**63 - 1),
)
DOUBLE = st.floats(allow_nan=True, allow_infinity=True)


def huge_text() -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from("xé\U0001f600"), st.integers(1000, 1_200_000)).map(
        lambda pair: pair[0] * pair[1]
    )


#: Ids of tasks that exist now, refreshed before each example. Drawn by index, so that the
#: shape of what hypothesis draws does not depend on this outside state.
ID_POOL: list[str] = []
#: "Now" for plausible timestamps, fixed for the run (the same reason).
NOW = int(time.time())


def existing_id(index: int) -> str:
    return ID_POOL[index % len(ID_POOL)] if ID_POOL else ""


def strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.sampled_from(INTERESTING),
        huge_text(),
        st.integers(0, 49).map(existing_id),
    )


def json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), DOUBLE, st.text(max_size=20), huge_text())
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=10), children, max_size=4),
        ),
        max_leaves=20,
    )


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


def structs() -> st.SearchStrategy[struct_pb2.Struct]:
    def build(value: dict[str, Any]) -> struct_pb2.Struct:
        message = struct_pb2.Struct()
        message.update(value)
        return message

    flat = st.dictionaries(st.text(max_size=20), json_values(), max_size=6)
    deep = st.integers(1, 150).map(_nested)  # protobuf refuses nesting beyond 100
    return st.one_of(flat, deep).map(build)


def plausible_time(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """Timestamps around now and durations of seconds, beside the arbitrary ones."""
    cls = GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Timestamp":
        seconds = st.integers(NOW - 3600, NOW + 400 * 86400)
    else:
        seconds = st.integers(-10, 100_000)
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, st.integers(0, 999_999_999))


def scalars(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return strings()
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return INT32
    if t in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return INT64
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t == FieldDescriptor.TYPE_DOUBLE:
        return DOUBLE
    if t == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
    if t == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        defined = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(defined), INT32)  # open enums: any int32 travels
    raise AssertionError(f"no strategy for {field.full_name} (type {t})")


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    if descriptor.full_name == "google.protobuf.Struct":
        return structs()
    cls = GetMessageClass(descriptor)
    if depth > 4:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        optional[field.name] = _field(field, depth)
    built = st.fixed_dictionaries({}, optional=optional).map(lambda values: _build(cls, values))
    if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return st.one_of(built, plausible_time(descriptor))
    return built


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return messages(field.message_type, depth + 1)
    return scalars(field)


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        return st.dictionaries(_value(key, depth), _value(value, depth), max_size=40).filter(
            lambda d: len(d) <= 6 or len(d) > 32
        )  # few, or more than the 32 allowed
    if field.is_repeated:
        return st.lists(_value(field, depth), max_size=5)
    return _value(field, depth)


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name) if field.is_repeated else None
        try:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if isinstance(v, Message):
                        target[k].CopyFrom(v)  # type: ignore[index]
                    else:
                        target[k] = v  # type: ignore[index]
            elif target is not None:
                for item in value:
                    with contextlib.suppress(DecodeError):  # too deep to copy (see below)
                        target.append(item)
            elif isinstance(value, Message):
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        except DecodeError:
            # A struct nested beyond protobuf's limit cannot be copied into a parent here;
            # it is sent as it is only at the top of a request (CreateTask's payload).
            message.ClearField(name)
    return message


# Plausible requests with one or two hostile fields: arbitrary values alone rarely get past
# the first check (a known type, an existing id), so half the examples start from a valid
# request and spoil it.

VALID_CRONS = ["0 3 * * *", "*/5 * * * *", "0 0 1 1 *", "30 2 * * 0"]


def valid_create() -> st.SearchStrategy[task_service_pb2.CreateTaskRequest]:
    return st.builds(
        lambda type_, priority, key: task_service_pb2.CreateTaskRequest(
            type=type_, priority=priority, idempotency_key=key
        ),
        st.sampled_from(KNOWN_TYPES),
        st.integers(0, 1000),
        st.sampled_from(["", "k1", "k2"]),
    )


def _plausible_field(field: FieldDescriptor) -> st.SearchStrategy[Any] | None:
    """A valid value for the fields that must have one to get anywhere, else None."""
    if field.name == "id" and field.type == FieldDescriptor.TYPE_STRING:
        return st.integers(0, 49).map(existing_id)
    if field.name == "type" and field.type == FieldDescriptor.TYPE_STRING:
        return st.sampled_from(KNOWN_TYPES)
    if field.name == "tasks":
        return st.lists(valid_create(), min_size=1, max_size=3)
    if field.name == "cron":
        return st.sampled_from(VALID_CRONS)
    if field.name == "time_zone":
        return st.sampled_from(["UTC", "Europe/Berlin"])
    if field.message_type is not None and field.message_type.full_name in (
        "orchestrator.v1.Schedule",
        "orchestrator.v1.CreateTaskRequest",
    ):
        return spoiled(field.message_type, depth=1)
    return None


def spoiled(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """A plausible request of ``descriptor`` (nested ones too) with up to two fields set to
    hostile values; for a batch, valid creates with one spoiled create among them."""
    cls = GetMessageClass(descriptor)
    if descriptor.full_name == "orchestrator.v1.BatchCreateTasksRequest":
        one_bad = spoiled(task_service_pb2.CreateTaskRequest.DESCRIPTOR)
        tasks = st.tuples(st.lists(valid_create(), max_size=3), one_bad, st.integers(0, 3))
        return tasks.map(lambda t: _build(cls, {"tasks": [*t[0][: t[2]], t[1], *t[0][t[2] :]]}))
    base = {f.name: s for f in descriptor.fields if (s := _plausible_field(f)) is not None}
    hostile = st.lists(
        st.sampled_from(list(descriptor.fields)).flatmap(
            lambda f: st.tuples(st.just(f.name), _field(f, depth))
        ),
        max_size=2,
    )
    return st.tuples(st.fixed_dictionaries(base), hostile).map(
        lambda pair: _build(cls, {**pair[0], **dict(pair[1])})
    )


def requests(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    if not descriptor.fields:
        return st.just(GetMessageClass(descriptor)())
    return st.one_of(messages(descriptor), spoiled(descriptor))


# -- calling one method with arbitrary bytes ------------------------------------------------


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    response: bytes | None
    trailers: str


def _identity(data: bytes) -> bytes:
    return data


def call(
    channel: grpc.Channel,
    method: MethodDescriptor | str,
    body: bytes,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Outcome:
    """Call ``method`` with ``body`` as the (only) request message; a stream is read for its
    first message at most (an open watch ends at its short deadline: DEADLINE_EXCEEDED)."""
    if isinstance(method, str):
        path, client_streaming, server_streaming = method, False, False
    else:
        path = f"/{method.containing_service.full_name}/{method.name}"
        client_streaming, server_streaming = method.client_streaming, method.server_streaming
    kwargs: dict[str, Any] = {"request_serializer": _identity, "response_deserializer": _identity}
    try:
        if client_streaming:
            stream = channel.stream_stream(path, **kwargs)(
                iter([body]), timeout=1.0, metadata=metadata
            )
            first = next(stream, None)
            stream.cancel()
            return Outcome(grpc.StatusCode.OK, "", first, "")
        if server_streaming:
            events = channel.unary_stream(path, **kwargs)(body, timeout=0.3, metadata=metadata)
            first = next(events, None)
            events.cancel()
            return Outcome(grpc.StatusCode.OK, "", first, "")
        response = channel.unary_unary(path, **kwargs)(body, timeout=15, metadata=metadata)
        return Outcome(grpc.StatusCode.OK, "", response, "")
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)  # what grpc raises for a call that failed
        trailers = " ".join(str(item) for item in exc.trailing_metadata() or ())
        return Outcome(exc.code(), exc.details() or "", None, trailers)


def assert_no_leak(outcome: Outcome, what: str) -> None:
    assert outcome.code not in NEVER, f"{what}: {outcome.code.name}: {outcome.details}"
    # The answer's status must reach the caller: an error message that echoes a huge input
    # overflows gRPC's metadata limit, and the caller gets this instead of the real status.
    assert "metadata size exceeds" not in outcome.details, (
        f"{what}: the error message is too large to be delivered (it echoes the input?): "
        f"{outcome.code.name}: {outcome.details}"
    )
    for text in (outcome.details, outcome.trailers):
        assert "Traceback" not in text and 'File "' not in text, f"{what}: {text[:2000]}"


def _parses(method: MethodDescriptor, body: bytes) -> bool:
    try:
        GetMessageClass(method.input_type).FromString(body)
    except DecodeError:
        return False
    return True


# -- the tests --------------------------------------------------------------------------------


def _created(method: MethodDescriptor, outcome: Outcome) -> set[str]:
    assert outcome.response is not None
    if method.name == "CreateTask":
        return {task_pb2.Task.FromString(outcome.response).id}
    answer = task_service_pb2.BatchCreateTasksResponse.FromString(outcome.response)
    return {t.id for t in answer.tasks}


def _check_writes(
    method: MethodDescriptor, outcome: Outcome, before: set[str], after: set[str]
) -> None:
    """Nothing half-written: tasks appear only by a successful create, vanish only by a
    successful delete."""
    ok = outcome.code == grpc.StatusCode.OK and outcome.response is not None
    if method.name in CREATES and ok:
        made = _created(method, outcome)
        assert after - before == made - before, (method.name, after - before, made)
        assert before <= after, (method.name, before - after)
    elif method.name in DELETES and ok:
        assert after <= before, (method.name, after - before)
        if method.name == "DeleteTasks":
            deleted = task_service_pb2.DeleteTasksResponse.FromString(outcome.response or b"")
            assert len(before - after) == deleted.deleted_count
        else:
            assert len(before - after) <= 1
    else:
        assert after == before, (
            f"{method.name} answered {outcome.code.name} yet tasks changed: "
            f"+{sorted(after - before)[:5]} -{sorted(before - after)[:5]}"
        )


def _cleanup(target: Target, method: MethodDescriptor, outcome: Outcome) -> None:
    """A schedule that was created fires tasks by itself: delete it at once."""
    if method.name == "CreateSchedule" and outcome.code == grpc.StatusCode.OK:
        assert outcome.response is not None
        schedule = admin_service_pb2.Schedule.FromString(outcome.response)
        request = admin_service_pb2.DeleteScheduleRequest(id=schedule.id)
        call(
            target.channel,
            ADMIN_SERVICE.methods_by_name["DeleteSchedule"],
            request.SerializeToString(),
        )


@pytest.fixture(scope="module")
def seeded(target: Target) -> Target:
    """A few real tasks, so that generated ids sometimes name existing ones."""
    create = TASK_SERVICE.methods_by_name["CreateTask"]
    for i, type_ in enumerate(KNOWN_TYPES * 3):
        request = task_service_pb2.CreateTaskRequest(type=type_, priority=i)
        assert call(target.channel, create, request.SerializeToString()).code == grpc.StatusCode.OK
    ID_POOL[:] = sorted(task_ids(target.database))
    return target


@pytest.mark.timeout(900)
@pytest.mark.parametrize("method", FUZZED, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_every_field_of_every_request(seeded: Target, method: MethodDescriptor) -> None:
    codes: dict[str, int] = {}
    samples: dict[str, str] = {}

    @FUZZ
    @given(request=requests(method.input_type))
    def example(request: Message) -> None:
        before = task_ids(seeded.database)
        ID_POOL[:] = sorted(before)[:50]
        outcome = call(seeded.channel, method, request.SerializeToString())
        codes[outcome.code.name] = codes.get(outcome.code.name, 0) + 1
        samples.setdefault(outcome.code.name, outcome.details[:100])
        assert_no_leak(outcome, method.name)
        _cleanup(seeded, method, outcome)
        _check_writes(method, outcome, before, task_ids(seeded.database))
        seeded.assert_serving(f"{method.name} {outcome.code.name}")

    example()
    print(f"\n{method.containing_service.name}.{method.name}: {dict(sorted(codes.items()))}")
    for code, detail in sorted(samples.items()):
        if code not in ("OK", "INVALID_ARGUMENT"):
            print(f"  {code}: {detail}")
    assert sum(codes.values()) > 0


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "method", EVERY_METHOD, ids=lambda m: f"{m.containing_service.name}.{m.name}"
)
def test_raw_bytes_to_every_method(target: Target, method: MethodDescriptor) -> None:
    codes: dict[str, int] = {}
    # A method the server does not implement (Health.List) is UNIMPLEMENTED whatever comes.
    implemented = call(target.channel, method, b"").code != grpc.StatusCode.UNIMPLEMENTED

    @FUZZ
    @given(body=st.one_of(st.binary(max_size=2048), st.just(b"\x0a\xff\xff\xff\xff\x0f")))
    def example(body: bytes) -> None:
        outcome = call(target.channel, method, body)
        codes[outcome.code.name] = codes.get(outcome.code.name, 0) + 1
        assert_no_leak(outcome, method.name)
        if not implemented:
            assert outcome.code == grpc.StatusCode.UNIMPLEMENTED, (method.name, outcome)
        elif not _parses(method, body):
            assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, (
                f"{method.name} with bytes that are not a {method.input_type.name}: "
                f"{outcome.code.name}: {outcome.details}"
            )
        _cleanup(target, method, outcome)
        target.assert_serving(f"raw bytes to {method.name}")

    example()
    print(f"\nraw bytes to {method.containing_service.name}.{method.name}: {codes}")


@pytest.mark.timeout(300)
def test_raw_bytes_to_unknown_methods(target: Target) -> None:
    names = st.text(alphabet=string.ascii_letters + string.digits + "._", min_size=1, max_size=30)
    services = st.sampled_from(
        ["orchestrator.v1.TaskService", "orchestrator.v1.AdminService", "nope.Nope", "x"]
    )

    @FUZZ
    @given(service=services, name=names, body=st.binary(max_size=256))
    def example(service: str, name: str, body: bytes) -> None:
        known = {m.name for m in EVERY_METHOD if m.containing_service.full_name == service}
        if name in known:
            return
        outcome = call(target.channel, f"/{service}/{name}", body)
        assert outcome.code == grpc.StatusCode.UNIMPLEMENTED, (service, name, outcome)
        target.assert_serving(f"/{service}/{name}")

    example()


@pytest.mark.timeout(300)
def test_raw_bytes_without_credentials(guarded: Target) -> None:
    """With authentication on, the guard refuses before decoding: UNAUTHENTICATED whatever
    the bytes; Health stays open to anyone."""

    @FUZZ
    @given(method=st.sampled_from(EVERY_METHOD), body=st.binary(max_size=512))
    def example(method: MethodDescriptor, body: bytes) -> None:
        outcome = call(guarded.channel, method, body)
        if method.containing_service is HEALTH_SERVICE:  # (its own answers: tested above)
            assert outcome.code != grpc.StatusCode.UNAUTHENTICATED, outcome
        else:
            assert outcome.code == grpc.StatusCode.UNAUTHENTICATED, (method.name, outcome)
            assert_no_leak(outcome, method.name)
        guarded.assert_serving(f"unauthenticated {method.name}")

    example()
    # And a real token is accepted (so the refusals above were about the credentials).
    ok = call(
        guarded.channel,
        ADMIN_SERVICE.methods_by_name["GetStats"],
        b"",
        metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),),
    )
    assert ok.code == grpc.StatusCode.OK, ok


def _junk(port: int, preface: bool, body: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        try:
            sock.sendall((HTTP2_PREFACE if preface else b"") + body)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):  # whatever it answers, until it closes
                pass
        except OSError:  # reset or timed out: either is fine, the server decides
            pass


@pytest.mark.timeout(300)
def test_junk_on_the_tcp_ports(target: Target) -> None:
    http_health = b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n"

    @FUZZ
    @given(preface=st.booleans(), body=st.binary(min_size=1, max_size=4096), http=st.booleans())
    def example(preface: bool, body: bytes, http: bool) -> None:
        _junk(target.http_port if http else target.grpc_port, preface, body)
        target.assert_serving("junk on the TCP port")
        with socket.create_connection(("127.0.0.1", target.http_port), timeout=5) as sock:
            sock.sendall(http_health)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n")[0], answer

    example()


@pytest.mark.timeout(120)
def test_oversized_message_is_resource_exhausted(target: Target) -> None:
    create = TASK_SERVICE.methods_by_name["CreateTask"]
    request = task_service_pb2.CreateTaskRequest(type="foo", group="g" * (17 * 1024 * 1024))
    outcome = call(target.channel, create, request.SerializeToString())
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome.code
    target.assert_serving("a 17 MiB message")


def test_scheduler_logged_no_unexpected_error(target: Target) -> None:
    """Last in this module: no unexpected error in the scheduler's own log — neither its
    servicers' INTERNAL path ("unexpected error in …") nor an exception that escaped to
    gRPC ("Unexpected [...] raised by servicer method", which the caller sees as UNKNOWN)."""
    log = target.process.stderr()
    junk = log.count("aiohttp.server Error handling request")
    print(f"\nscheduler log: {junk} aiohttp tracebacks for junk HTTP requests")
    problems = [
        line
        for line in log.splitlines()
        if "unexpected error in" in line or "raised by servicer method" in line
    ]
    assert not problems, "\n".join(sorted(set(problems)))
