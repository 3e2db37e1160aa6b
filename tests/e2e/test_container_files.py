"""The Dockerfile and docker-compose.yml, checked without a Docker engine (none runs here).

What can be checked outside a container is checked:

- every ``ORCHESTRATOR_*`` variable the files set is an option of the service that reads
  it, with a value that option accepts;
- the image runs as a non-root user, and the commands it and the compose file run are the
  project's entry points;
- the build stage's own command, run on a copy of exactly what the build stage copies in,
  makes a wheel holding the migrations and the dashboard's files; and that wheel, unpacked,
  runs a scheduler with the image's environment (the compose file's demo setting on
  top), which the image's HEALTHCHECK command finds healthy, which serves the dashboard,
  and to which a worker with the compose file's environment connects and runs a task.
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
from pathlib import Path

import pytest

from orchestrator.v1 import task_pb2
from scheduler_service.config import build_parser as scheduler_parser
from tests.support.cluster import Cluster
from tests.support.processes import ManagedProcess, SchedulerProcess
from tests.support.tasks import request, wait_terminal
from worker_service.config import build_parser as worker_parser

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = (ROOT / "docker-compose.yml").read_text()


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


def _compose_env(service: str) -> dict[str, str]:
    """The ``environment:`` mapping of one compose service (a small, fixed-shape file)."""
    block = re.search(rf"^  {service}:\n((?:    .*\n|\n)+)", COMPOSE, re.MULTILINE)
    assert block, f"no service {service} in docker-compose.yml"
    env = re.search(r"^    environment:\n((?:      .*\n)+)", block.group(1), re.MULTILINE)
    found: dict[str, str] = {}
    for line in env.group(1).splitlines() if env else []:
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(":")
            found[key.strip()] = value.strip().strip('"')
    return found


def _compose_command(service: str) -> list[str]:
    block = re.search(rf"^  {service}:\n((?:    .*\n|\n)+)", COMPOSE, re.MULTILINE)
    assert block
    command = re.search(r"^    command: (\[.*\])$", block.group(1), re.MULTILINE)
    assert command, f"{service} has no command"
    return [part.strip().strip('"') for part in command.group(1)[1:-1].split(",")]


def test_every_variable_in_the_container_files_is_an_option_of_its_service() -> None:
    image = _image_env()
    scheduler_env = {**image, **_compose_env("scheduler")}
    worker_env = _compose_env("worker")
    assert worker_env, "the compose file's workers set no environment"
    checked = 0
    for build_parser, env in ((scheduler_parser, scheduler_env), (worker_parser, worker_env)):
        defaults = vars(build_parser({}).parse_args([]))
        for name, value in env.items():
            if not name.startswith("ORCHESTRATOR_"):
                continue
            # Parsing fails (SystemExit) for a value the option refuses; an unknown
            # variable changes nothing.
            parsed = vars(build_parser({name: value}).parse_args([]))
            assert parsed != defaults, f"{name}={value!r} is no option of {build_parser.__module__}"
            checked += 1
    assert checked >= 5


def test_the_image_runs_as_a_non_root_user_and_runs_the_entry_points() -> None:
    final = _stages()[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (cmd,) = [line for line in final if line.upper().startswith("CMD ")]
    assert _json_list(cmd[4:])[0] == "orchestrator-scheduler" in scripts
    assert _compose_command("scheduler")[0] in scripts
    assert _compose_command("worker")[0] in scripts
    assert "orchestrator-worker" in scripts


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
