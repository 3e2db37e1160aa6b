"""The dashboard's HTTP side without a browser, on real scheduler processes: bad input is
answered with the status and the parameter's name, writes need the dashboard's header,
event streams carry live data and end with the server, and under token authentication
only an admin gets in (by header, or by the login form's cookie).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from orchestrator.v1 import admin_service_pb2
from tests.support.cluster import Cluster
from tests.support.secure import write_tokens
from tests.support.tasks import request, wait_terminal

pytestmark = pytest.mark.slow

ADMIN = "admin-token-1029384756abcdefabcd"
CLIENT = "client-token-5e0f1c2d3b4a59687766"
WRITE = {"X-Orchestrator-Dashboard": "1"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe=True: keep cookies from an IP address (the scheduler is on 127.0.0.1).
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=20), cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as session:
        yield session


Event = tuple[str, dict[str, Any]]


async def events(
    http: aiohttp.ClientSession, url: str, last: Callable[[list[Event]], bool]
) -> list[Event]:
    """The server-sent events of ``url`` up to the one for which ``last(events)`` holds."""
    found: list[Event] = []
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream"
        name = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                found.append((name, json.loads(line.removeprefix("data: "))))
                if last(found):
                    return found
    raise AssertionError(f"the stream ended after {found}")


async def test_bad_input_is_refused_by_name_and_writes_need_the_header(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    scheduler = await cluster.start_scheduler("--task-types", "sum2")
    base = f"http://{scheduler.http_address}/dashboard"

    cases = {
        "/api/tasks?states=bogus": (400, "states[0]"),
        "/api/tasks?page_size=abc": (400, "page_size"),
        "/api/tasks?page_size=-1": (400, "page_size"),
        "/api/tasks?labels=novalue": (400, "labels[0]"),
        "/api/tasks?page_token=garbage!!": (400, "page_token"),
        "/api/tasks?task_id=not-an-id": (400, "task_id"),
        "/api/tasks/xyz": (400, "id"),
        "/api/tasks/01M8JXH08Z02QT922EJ2VJFT2P": (404, None),
        "/api/tasks/01M8JXH08Z02QT922EJ2VJFT2P/events": (404, None),
    }
    for path, (status, field) in cases.items():
        async with http.get(base + path) as response:
            body = await response.json()
            assert response.status == status, (path, body)
            assert body.get("field") == field, (path, body)
            assert body["error"], path

    # A cross-site form cannot add the header: without it nothing is written.
    async with http.post(f"{base}/api/task-types/sum2/pause") as response:
        assert response.status == 403
        assert "X-Orchestrator-Dashboard" in (await response.json())["error"]
    async with http.post(f"{base}/api/task-types/nope/pause", headers=WRITE) as response:
        assert response.status == 404
    admin = cluster.admin()
    listing = await admin.ListTaskTypes(admin_service_pb2.ListTaskTypesRequest())
    assert all(t.state == admin_service_pb2.TASK_TYPE_STATE_ACTIVE for t in listing.task_types)
    async with http.post(f"{base}/api/task-types/sum2/pause", headers=WRITE) as response:
        assert response.status == 200
        assert (await response.json())["state"] == "TASK_TYPE_STATE_PAUSED"
    listing = await admin.ListTaskTypes(admin_service_pb2.ListTaskTypesRequest())
    (sum2,) = [t for t in listing.task_types if t.name == "sum2"]
    assert sum2.state == admin_service_pb2.TASK_TYPE_STATE_PAUSED

    # The service kept serving through all of it.
    async with http.get(f"http://{scheduler.http_address}/healthz") as response:
        assert response.status == 200


async def test_event_streams_carry_the_overview_and_a_task_to_its_end(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker(worker_id="w1")
    base = f"http://{scheduler.http_address}/dashboard"
    tasks = cluster.tasks()

    overviews = await events(http, f"{base}/api/events", lambda found: len(found) == 2)
    assert [name for name, _ in overviews] == ["overview", "overview"]
    second = overviews[1][1]
    assert second["time"] > overviews[0][1]["time"]
    assert [w["id"] for w in second["workers"]] == ["w1"]

    created = await tasks.CreateTask(request("foo", {"seconds": 0.3}))
    stream = await events(
        http,
        f"{base}/api/tasks/{created.id}/events",
        lambda found: found[-1][1]["state"] == "TASK_STATE_SUCCEEDED",
    )
    states = [data["state"] for _, data in stream]
    # Each event is the task after a change; the stream's first is the task as it stood
    # (a 0.3 s task is still pending or running when the stream opens).
    assert states[0] in ("TASK_STATE_PENDING", "TASK_STATE_RUNNING"), states
    assert states[-1] == "TASK_STATE_SUCCEEDED", states
    final = stream[-1][1]
    assert final["attemptHistory"][0]["outcome"] == "ATTEMPT_OUTCOME_SUCCEEDED"
    done = await wait_terminal(tasks, created.id)
    assert final["revision"] == str(done.revision)

    # A listing filtered by state and type finds it, and only what matches.
    async with http.get(
        f"{base}/api/tasks", params=[("states", "succeeded"), ("types", "foo")]
    ) as response:
        listing = await response.json()
    assert [t["id"] for t in listing["tasks"]] == [created.id]
    async with http.get(f"{base}/api/tasks", params={"states": "failed"}) as response:
        assert (await response.json())["tasks"] == []

    # An open stream does not hold the scheduler's shutdown up.
    async with http.get(f"{base}/api/events") as response:
        assert response.status == 200
        await response.content.readline()
        scheduler.signal(signal.SIGTERM)
        # The stream ends (EOF) instead of hanging until the client's timeout.
        await asyncio.wait_for(response.content.read(), timeout=10)
    assert await scheduler.wait_async(10) == 0


async def test_with_tokens_only_an_admin_gets_in(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    tokens = write_tokens(
        cluster.dir / "tokens", {ADMIN: ("admin", "ops"), CLIENT: ("client", "a")}
    )
    scheduler = await cluster.start_scheduler("--auth-tokens", str(tokens), "--task-types", "sum2")
    base = f"http://{scheduler.http_address}/dashboard"

    async with http.get(f"{base}/", allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"] == "/dashboard/login"
    async with http.get(f"{base}/api/overview") as response:
        assert response.status == 401
    bearer = {"Authorization": f"Bearer {CLIENT}"}
    async with http.get(f"{base}/api/overview", headers=bearer) as response:
        assert response.status == 403
    async with http.post(
        f"{base}/api/task-types/sum2/pause", headers={**bearer, **WRITE}
    ) as response:
        assert response.status == 403
    async with http.get(
        f"{base}/api/overview", headers={"Authorization": f"Bearer {ADMIN}"}
    ) as response:
        assert response.status == 200
        assert "taskTypes" in await response.json()

    # The login form: a client's token is refused, an admin's sets an HttpOnly cookie.
    async with http.post(
        f"{base}/login", data={"token": CLIENT}, allow_redirects=False
    ) as response:
        assert response.status == 302
        assert response.headers["Location"] == "/dashboard/login?refused=1"
        assert "orchestrator_token" not in response.cookies
    async with http.post(f"{base}/login", data={"token": ADMIN}, allow_redirects=False) as response:
        assert response.status == 303
        cookie = response.cookies["orchestrator_token"]
        assert cookie.value == ADMIN
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
    async with http.get(f"{base}/api/overview") as response:  # the session sends the cookie
        assert response.status == 200
    async with http.post(f"{base}/api/task-types/sum2/pause", headers=WRITE) as response:
        assert response.status == 200
    async with http.post(f"{base}/logout", allow_redirects=False) as response:
        assert response.status == 303
    async with http.get(f"{base}/api/overview") as response:
        assert response.status == 401
