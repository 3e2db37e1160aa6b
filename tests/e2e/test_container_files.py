"""The Dockerfile and the compose files, checked without a Docker engine (none runs here).

What can be checked outside a container is checked, for ``docker-compose.yml`` (a scheduler
and workers on SQLite) and ``docker-compose.postgres.yml`` (README "Scaling out": three
scheduler replicas on one PostgreSQL, and workers):

- every ``ORCHESTRATOR_*`` variable the files set is an option of the service that reads
  it, with a value that option accepts, and each service's whole environment makes a
  configuration its service accepts (a scheduler listening beyond loopback, for one);
- the image runs as a non-root user, and the commands it and the compose files run are the
  project's entry points; it installs the extras its settings need;
- every worker is given exactly the scheduler services of its file, at the port they
  listen on; published ports are on the host's loopback, none twice; the replicas' database
  URL names the file's PostgreSQL service with its credentials, and they wait for it healthy;
- the build stage's own command, run on a copy of exactly what the build stage copies in,
  makes a wheel holding the migrations and the dashboard's files; and that wheel, unpacked,
  runs a scheduler with the image's environment (the compose file's demo setting on
  top), which the image's HEALTHCHECK command finds healthy, which serves the dashboard,
  and to which a worker with the compose file's environment connects and runs a task;
- the PostgreSQL topology, run as processes: a real PostgreSQL server, the three replicas
  with their compose environment, the workers with theirs; tasks created through every
  replica all succeed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.v1 import admin_service_pb2, task_pb2
from scheduler_service.config import SchedulerConfig
from scheduler_service.config import build_parser as scheduler_parser
from tests.support.cluster import Cluster
from tests.support.processes import ManagedProcess, SchedulerProcess
from tests.support.tasks import request, wait_terminal
from worker_service.config import WorkerConfig
from worker_service.config import build_parser as worker_parser

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.postgres.yml")
COMPOSE = (ROOT / "docker-compose.yml").read_text()
POSTGRES_COMPOSE = (ROOT / "docker-compose.postgres.yml").read_text()
IMAGE = "task-orchestrator:latest"


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), stage by stage."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def _image_env() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in _stages()[-1]:
        if line.upper().startswith("ENV "):
            found.update(dict(pair.split("=", 1) for pair in shlex.split(line[4:])))
    return found


# The compose files have a small, fixed shape (two-space services, four-space keys, six-space
# entries), which these regexes read; a file that strays from it fails here, not silently.


def _services(compose: str) -> list[str]:
    """The service names of a compose file, in file order."""
    block = re.search(r"^services:\n((?:  .*\n|\n)+)", compose, re.MULTILINE)
    assert block, "no services: block"
    return re.findall(r"^  ([\w.-]+):$", block.group(1), re.MULTILINE)


def _service(compose: str, service: str) -> str:
    block = re.search(rf"^  {re.escape(service)}:\n((?:    .*\n|\n)+)", compose, re.MULTILINE)
    assert block, f"no service {service}"
    return block.group(1)


def _key(compose: str, service: str, key: str) -> list[str]:
    """The lines (stripped, comments left out) under one key of a service."""
    found = re.search(rf"^    {key}:\n((?:      .*\n)+)", _service(compose, service), re.MULTILINE)
    lines = (line.strip() for line in found.group(1).splitlines()) if found else ()
    return [line for line in lines if line and not line.startswith("#")]


def _scalar(compose: str, service: str, key: str) -> str | None:
    found = re.search(rf"^    {key}: (.*)$", _service(compose, service), re.MULTILINE)
    return found.group(1).strip() if found else None


def _compose_env(service: str, compose: str = COMPOSE) -> dict[str, str]:
    """The ``environment:`` mapping of one compose service."""
    found: dict[str, str] = {}
    for line in _key(compose, service, "environment"):
        key, _, value = line.partition(":")
        found[key.strip()] = value.strip().strip('"')
    return found


def _compose_command(service: str, compose: str = COMPOSE) -> list[str] | None:
    command = _scalar(compose, service, "command")
    return _json_list(command) if command else None


def _role(compose: str, service: str) -> str | None:
    """``scheduler`` or ``worker`` for a service running this project's image, else None."""
    command = _compose_command(service, compose)
    if _scalar(compose, service, "image") != IMAGE or not command:
        return None
    return {"orchestrator-scheduler": "scheduler", "orchestrator-worker": "worker"}[command[0]]


def _with_role(compose: str, role: str) -> list[str]:
    return [s for s in _services(compose) if _role(compose, s) == role]


def _service_env(compose: str, service: str) -> dict[str, str]:
    """What the service's process sees: the image's ENV, then the compose file's."""
    return {**_image_env(), **_compose_env(service, compose)}


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_every_variable_in_the_container_files_is_an_option_of_its_service(
    compose_file: str,
) -> None:
    compose = (ROOT / compose_file).read_text()
    parsers: dict[str, Callable[[Mapping[str, str]], Any]] = {
        "scheduler": scheduler_parser,
        "worker": worker_parser,
    }
    configs: dict[str, Callable[[Sequence[str], Mapping[str, str]], object]] = {
        "scheduler": SchedulerConfig.from_args,
        "worker": WorkerConfig.from_args,
    }
    checked = 0
    for role in ("scheduler", "worker"):
        services = _with_role(compose, role)
        assert services, f"{compose_file} has no {role}"
        for service in services:
            own = _compose_env(service, compose)
            assert own, f"{compose_file}: {service} sets no environment"
            # The image's ENV is read by the scheduler; a worker ignores what it has no
            # option for, so only its own settings are checked against its options.
            env = _service_env(compose, service) if role == "scheduler" else own
            build_parser = parsers[role]
            defaults = vars(build_parser({}).parse_args([]))
            for name, value in env.items():
                if not name.startswith("ORCHESTRATOR_"):
                    continue
                # Parsing fails (SystemExit) for a value the option refuses; an unknown
                # variable changes nothing.
                parsed = vars(build_parser({name: value}).parse_args([]))
                assert parsed != defaults, (
                    f"{compose_file}: {service}: {name}={value!r} is no option"
                )
                checked += 1
            # The whole environment together: a scheduler beyond loopback without TLS or
            # authentication, for one, is refused here (SystemExit) as at start.
            try:
                configs[role]([], _service_env(compose, service))
            except SystemExit:
                pytest.fail(f"{compose_file}: {service}'s environment is refused (stderr above)")
    assert checked >= 5


def test_the_image_runs_as_a_non_root_user_and_runs_the_entry_points() -> None:
    final = _stages()[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (cmd,) = [line for line in final if line.upper().startswith("CMD ")]
    assert _json_list(cmd[4:])[0] == "orchestrator-scheduler" in scripts
    assert "orchestrator-worker" in scripts
    for compose_file in COMPOSE_FILES:
        compose = (ROOT / compose_file).read_text()
        ours = [s for s in _services(compose) if _scalar(compose, s, "image") == IMAGE]
        assert ours, compose_file
        for service in ours:
            command = _compose_command(service, compose)
            assert command and command[0] in scripts, (compose_file, service, command)


def test_the_image_installs_the_extras_its_settings_need() -> None:
    """``tracing`` for ORCHESTRATOR_OTLP_ENDPOINT, ``postgres`` (asyncpg) for a
    ``postgresql://`` ORCHESTRATOR_DATABASE, as docker-compose.postgres.yml sets."""
    (run,) = [line for line in _stages()[0] if line.upper().startswith("RUN ")]
    target = shlex.split(run[4:])[-1]
    found = re.fullmatch(r"\.\[([\w,-]+)\]", target)
    assert found, f"the build stage builds {target!r}, not the project with extras"
    extras = set(found.group(1).split(","))
    assert {"tracing", "postgres"} <= extras, extras
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras <= set(declared), extras - set(declared)


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_every_worker_is_given_exactly_the_scheduler_services_of_its_file(
    compose_file: str,
) -> None:
    compose = (ROOT / compose_file).read_text()
    schedulers = _with_role(compose, "scheduler")
    workers = _with_role(compose, "worker")
    firsts = set()
    for worker in workers:
        addresses = _compose_env(worker, compose)["ORCHESTRATOR_SCHEDULER"].split(",")
        hosts = [address.rpartition(":")[0] for address in addresses]
        assert sorted(hosts) == sorted(schedulers), (compose_file, worker, addresses)
        for address in addresses:
            host, _, port = address.rpartition(":")
            listen = _service_env(compose, host)["ORCHESTRATOR_LISTEN"]
            assert port == listen.rpartition(":")[2], (compose_file, worker, address, listen)
        firsts.add(hosts[0])
    # Each worker service starts from a different replica (while there are replicas left),
    # so the workers' streams are spread over them rather than all on the first.
    assert len(firsts) == min(len(workers), len(schedulers)), (compose_file, firsts)


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_published_ports_are_on_loopback_and_distinct(compose_file: str) -> None:
    compose = (ROOT / compose_file).read_text()
    published = [
        entry.removeprefix("- ").strip('"')
        for service in _services(compose)
        for entry in _key(compose, service, "ports")
    ]
    assert published, compose_file
    for entry in published:
        assert entry.startswith("127.0.0.1:"), f"{compose_file}: {entry} beyond loopback"
    host_ports = [entry.split(":")[1] for entry in published]
    assert len(set(host_ports)) == len(host_ports), (compose_file, host_ports)


def test_the_replicas_share_the_postgres_service_and_wait_until_it_is_healthy() -> None:
    compose = POSTGRES_COMPOSE
    schedulers = _with_role(compose, "scheduler")
    assert len(schedulers) == 3, schedulers
    urls = {_compose_env(s, compose)["ORCHESTRATOR_DATABASE"] for s in schedulers}
    (url,) = urls  # one database for every replica
    parts = urlsplit(url)
    assert parts.scheme == "postgresql", url
    server = _compose_env(parts.hostname or "", compose)  # the host is a service of the file
    assert (parts.username, parts.password, parts.path, parts.port) == (
        server["POSTGRES_USER"],
        server["POSTGRES_PASSWORD"],
        "/" + server["POSTGRES_DB"],
        5432,
    ), url
    assert "pg_isready" in (_key(compose, parts.hostname or "", "healthcheck") or [""])[0]
    assert any(
        v.endswith(":/var/lib/postgresql/data") for v in _key(compose, "postgres", "volumes")
    )
    for scheduler in schedulers:
        waits = "\n".join(_key(compose, scheduler, "depends_on"))
        assert f"{parts.hostname}:\ncondition: service_healthy" in waits, (scheduler, waits)


def _docker_ignored(directory: str, names: list[str]) -> set[str]:
    """What ``.dockerignore`` keeps out of the build context, for a copy of ``directory``."""
    patterns = [
        line.strip().removeprefix("**/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    relative = Path(directory).relative_to(ROOT) if Path(directory).is_relative_to(ROOT) else None
    ignored = set()
    for name in names:
        path = str(relative / name) if relative is not None else name
        if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns):
            ignored.add(name)
    return ignored


def _json_list(text: str) -> list[str]:
    return [part.strip().strip('"') for part in text.strip()[1:-1].split(",")]


@pytest.mark.sqlite_only  # the image's own database: SQLite on /data
async def test_the_build_stage_makes_a_wheel_that_serves_with_the_image_settings(
    cluster: Cluster, tmp_path: Path
) -> None:
    build = _stages()[0]
    source = tmp_path / "src"
    source.mkdir()
    for line in build:
        if line.upper().startswith("COPY "):
            *paths, _target = line.split()[1:]
            for path in paths:
                origin = ROOT / path
                if origin.is_dir():
                    shutil.copytree(origin, source / path, ignore=_docker_ignored)
                else:
                    shutil.copy(origin, source / path)
    (run,) = [line for line in build if line.upper().startswith("RUN ")]
    command = shlex.split(run[4:])
    assert command[:2] == ["pip", "wheel"], command
    wheels = tmp_path / "wheels"
    command[command.index("--wheel-dir") + 1] = str(wheels)
    # The same command, but with no downloads: no build isolation (this interpreter's
    # setuptools) and no dependencies (they are installed here already).
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", *command, "--no-deps", "--no-build-isolation", "--quiet"],
        cwd=source,
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("task_orchestrator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for needed in (
        "scheduler_service/store/sqlite/migrations/0001_initial.sql",
        "scheduler_service/store/postgres/migrations/0001_initial.sql",
        "scheduler_service/http/static/dashboard.html",
        "scheduler_service/http/static/dashboard.js",
        "scheduler_service/http/static/dashboard.css",
        "orchestrator/v1/task_service.proto",
        "orchestrator_client/py.typed",
    ):
        assert needed in names, f"{needed} missing from {wheel.name}"

    # -P: not this checkout from the working directory; the unpacked wheel on PYTHONPATH.
    site = str(tmp_path / "site")
    env = {
        **_image_env(),
        **_compose_env("scheduler"),
        "PYTHONPATH": site,  # the unpacked wheel first, before this checkout
        "ORCHESTRATOR_DATABASE": str(tmp_path / "data" / "orchestrator.db"),
        "ORCHESTRATOR_LISTEN": "0.0.0.0:0",  # the image's interface, any free port
        "ORCHESTRATOR_HTTP_LISTEN": "0.0.0.0:0",
    }
    (tmp_path / "data").mkdir()
    scheduler = SchedulerProcess(
        "image-scheduler",
        [sys.executable, "-P", "-c", "import scheduler_service.__main__ as m; m.main()"],
        tmp_path,
        env,
    )
    cluster.schedulers.append(scheduler)
    await scheduler.wait_ready()
    origin = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-P", "-c", "import scheduler_service; print(scheduler_service.__file__)"],
        env={"PYTHONPATH": site},
        capture_output=True,
        text=True,
        check=True,
    )
    assert origin.stdout.startswith(site), origin.stdout
    http_port = scheduler.http_address.rpartition(":")[2]
    grpc_port = scheduler.grpc_address.rpartition(":")[2]

    # The image's HEALTHCHECK, as it is written, against this scheduler's HTTP port.
    (check,) = [line for line in _stages()[-1] if line.upper().startswith("HEALTHCHECK ")]
    probe = check.split(" CMD ", 1)[1].replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
    probe = probe.replace("python -c", f"{shlex.quote(sys.executable)} -c", 1)
    healthy = await asyncio.to_thread(
        subprocess.run, ["sh", "-c", probe], env={}, capture_output=True, timeout=30
    )
    assert healthy.returncode == 0, healthy

    # The dashboard's files came with the wheel.
    page = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{http_port}"
            "/dashboard/').read().decode())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "dashboard.js" in page.stdout

    # A worker as the compose file runs it, pointed at this scheduler.
    worker_env = {
        **_compose_env("worker"),
        "PYTHONPATH": site,
        "ORCHESTRATOR_SCHEDULER": f"127.0.0.1:{grpc_port}",
        "ORCHESTRATOR_WORKER_ID": "compose-worker",
    }
    worker = ManagedProcess(
        "image-worker",
        [sys.executable, "-P", "-c", "import worker_service.__main__ as m; m.main()"],
        tmp_path,
        worker_env,
    )
    cluster.workers.append(worker)
    await cluster.wait_for_worker("compose-worker", scheduler)
    tasks = cluster.tasks(scheduler)
    created = await tasks.CreateTask(request("sum2", {"first": 2, "second": 3}))
    done = await wait_terminal(tasks, created.id)
    assert done.state == task_pb2.TASK_STATE_SUCCEEDED, done
    assert dict(done.result)["sum"] == 5


@pytest.mark.postgres_only
async def test_the_postgres_compose_topology_runs_as_processes(
    cluster: Cluster, tmp_path: Path, postgres_url: str
) -> None:
    """docker-compose.postgres.yml without containers: each scheduler service as a process
    with its environment (the image's, then the file's), the database URL swapped for a real
    test server's and the ports for free ones; each worker service with its own, its
    scheduler list swapped for those processes' addresses in the same order."""
    compose = POSTGRES_COMPOSE
    replicas: dict[str, SchedulerProcess] = {}
    for service in _with_role(compose, "scheduler"):
        env = {
            **_service_env(compose, service),
            "ORCHESTRATOR_DATABASE": postgres_url,
            "ORCHESTRATOR_LISTEN": "0.0.0.0:0",  # the image's interface, any free port
            "ORCHESTRATOR_HTTP_LISTEN": "0.0.0.0:0",
        }
        replica = SchedulerProcess(
            service, [sys.executable, "-m", "scheduler_service"], tmp_path, env
        )
        cluster.schedulers.append(replica)
        replicas[service] = replica
    for replica in replicas.values():
        await replica.wait_ready()
    assert len(replicas) == 3

    def local(address: str) -> str:
        return "127.0.0.1:" + replicas[address.rpartition(":")[0]].grpc_address.rpartition(":")[2]

    for service in _with_role(compose, "worker"):
        own = _compose_env(service, compose)
        addresses = own["ORCHESTRATOR_SCHEDULER"].split(",")
        worker = ManagedProcess(
            service,
            [sys.executable, "-m", "worker_service"],
            tmp_path,
            {
                **own,
                "ORCHESTRATOR_SCHEDULER": ",".join(local(a) for a in addresses),
                "ORCHESTRATOR_WORKER_ID": service,
            },
        )
        cluster.workers.append(worker)
        await cluster.wait_for_worker(service, replicas[addresses[0].rpartition(":")[0]])
    # Each worker on the first replica of its list: one on each.
    listed = await cluster.admin(replicas["scheduler1"]).ListWorkers(
        admin_service_pb2.ListWorkersRequest()
    )
    on = {w.id: w.scheduler_id for w in listed.workers}
    assert len(on) == len(cluster.workers) == 3, on
    assert len(set(on.values())) == 3, on

    # Tasks created through every replica; each replica sees every task succeed, whichever
    # replica's worker ran it.
    created: list[tuple[str, int]] = []
    for n, replica in enumerate(replicas.values()):
        stub = cluster.tasks(replica)
        for i in range(5):
            first, second = n * 100 + i, 7
            task = await stub.CreateTask(request("sum2", {"first": first, "second": second}))
            created.append((task.id, first + second))
    for replica in replicas.values():
        stub = cluster.tasks(replica)
        for task_id, total in created:
            done = await wait_terminal(stub, task_id)
            assert done.state == task_pb2.TASK_STATE_SUCCEEDED, (replica.name, done)
            assert dict(done.result)["sum"] == total
    for process in [*replicas.values(), *cluster.workers]:
        assert process.running, process.dump()
