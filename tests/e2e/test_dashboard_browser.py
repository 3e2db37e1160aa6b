"""The dashboard in a real headless Chromium, against real scheduler and worker processes.

The page loads and shows the worker and the task types; a task the test creates appears in
the list; its page turns from running to succeeded by itself (server-sent events: the test
checks that the page was never reloaded); and the Pause button on the overview pauses the
type for real (the scheduler stops leasing it) until Resume.

With ``ORCHESTRATOR_SCREENSHOTS=<dir>`` the test also saves the screenshots that the
README shows (``docs/screenshots``); it always saves them beside the test's own files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from tests.support.browser import chromium, require_browser, wait_until
from tests.support.cluster import Cluster
from tests.support.observe import holds_for
from tests.support.polling import eventually
from tests.support.tasks import request, wait_terminal

pytestmark = pytest.mark.slow
HELD = 3  # tasks created while their type is paused


class Page:
    """The test's handle on the browser: every Selenium call runs in a thread."""

    def __init__(self, driver: Any, base: str, shots: list[Path]) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots

    async def run(self, function: Any, *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    async def open(self, fragment: str = "") -> None:
        await self.run(self.driver.get, f"{self.base}/dashboard/{fragment}")

    async def go(self, fragment: str) -> None:
        """Change the hash route without loading the page again."""
        await self.run(self.driver.execute_script, "window.location.hash = arguments[0]", fragment)

    async def script(self, code: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, code, *args)

    async def wait_for(
        self,
        code: str,
        *args: Any,
        message: str,
        timeout: float = 20.0,  # noqa: ASYNC109 - passed on to the browser's own wait
    ) -> Any:
        """Wait until the JavaScript expression ``code`` is truthy in the page."""
        return await self.run(
            wait_until,
            self.driver,
            lambda d: d.execute_script(f"return ({code})", *args),
            timeout,
            message,
        )

    async def screenshot(self, name: str) -> None:
        for directory in self.shots:
            directory.mkdir(parents=True, exist_ok=True)
            await self.run(self.driver.save_screenshot, str(directory / name))


@pytest.fixture
async def page(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Page]:
    require_browser()
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker("--slots", "4", worker_id="w1")
    shots = [tmp_path / "screenshots"]
    if os.environ.get("ORCHESTRATOR_SCREENSHOTS"):
        shots.append(Path(os.environ["ORCHESTRATOR_SCREENSHOTS"]))
    browser = chromium(tmp_path / "chromium-profile")
    driver = await asyncio.to_thread(next, browser)
    try:
        yield Page(driver, f"http://{scheduler.http_address}", shots)
    finally:
        await asyncio.to_thread(browser.close)
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


async def type_state(cluster: Cluster, name: str) -> int:
    listing = await cluster.admin().ListTaskTypes(admin_service_pb2.ListTaskTypesRequest())
    (found,) = [t for t in listing.task_types if t.name == name]
    return int(found.state)


async def test_the_dashboard_shows_a_task_live_and_pauses_a_type(
    cluster: Cluster, page: Page
) -> None:
    tasks = cluster.tasks()
    await page.open()

    # The overview: live, the connected worker with its slots, the task types.
    await page.wait_for(
        "document.querySelector('#live').textContent === 'live'", message="the event stream open"
    )
    await page.wait_for(
        "document.querySelector('#workers tr[data-worker=\"w1\"]')",
        message="worker w1 in the workers table",
    )
    slots = await page.script(
        "return document.querySelector('#workers tr[data-worker=\"w1\"]').cells[4].textContent"
    )
    assert slots == "4"
    await page.wait_for(
        "document.querySelector('#types tr[data-type=\"foo\"]')", message="type foo listed"
    )
    # A marker that a reload would wipe: everything below happens without one.
    await page.script("window.__notReloaded = true")

    # A task the test creates: in the list, then its page goes running -> succeeded live.
    created = await tasks.CreateTask(
        request("foo", {"seconds": 1.5}, labels={"shown-by": "dashboard-test"})
    )
    await page.go("#/tasks")
    await page.wait_for(
        "document.querySelector(`#tasks tr[data-task='${arguments[0]}']`)",
        created.id,
        message="the new task in the task list",
    )
    await page.go(f"#/tasks/{created.id}")
    await page.wait_for(
        "document.querySelector('#task-state').dataset.state === 'running'",
        message="the task page showing RUNNING",
    )
    payload = await page.script("return document.querySelector('#task-payload').textContent")
    assert '"seconds": 1.5' in payload
    await page.wait_for(
        "document.querySelector('#task-state').dataset.state === 'succeeded'",
        message="the task page turning SUCCEEDED by itself",
    )
    outcomes = await page.script(
        "return [...document.querySelectorAll('#attempts tbody tr')].map(r => r.dataset.outcome)"
    )
    assert outcomes == ["succeeded"]
    finished = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=created.id))
    assert finished.state == task_pb2.TASK_STATE_SUCCEEDED
    await page.screenshot("dashboard-task.png")

    # The search box finds the task by id.
    await page.go("#/tasks")
    await page.script(
        "const f = document.querySelector('#filters'); f.q.value = arguments[0]; f.requestSubmit()",
        created.id,
    )
    await page.wait_for(
        "document.querySelectorAll('#tasks tbody tr').length === 1"
        " && document.querySelector(`#tasks tr[data-task='${arguments[0]}']`)",
        created.id,
        message="the search by id showing exactly that task",
    )

    # Pausing from the page pauses the type in the scheduler.
    await page.go("#/")
    await page.wait_for(
        'document.querySelector(\'#types tr[data-type="foo"] button[data-action="pause"]\')',
        message="a Pause button for foo",
    )
    await page.script("document.querySelector('#types tr[data-type=\"foo\"] button').click()")

    async def paused() -> bool:
        return await type_state(cluster, "foo") == admin_service_pb2.TASK_TYPE_STATE_PAUSED

    await eventually(paused, message="foo paused through the dashboard")
    await page.wait_for(
        "document.querySelector('#types tr[data-type=\"foo\"]').dataset.paused === 'true'",
        message="the row showing foo paused",
    )
    held = [await tasks.CreateTask(request("foo", {"seconds": 0.05})) for _ in range(HELD)]

    async def still_pending() -> str:
        for created_task in held:
            task = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=created_task.id))
            if task.state != task_pb2.TASK_STATE_PENDING:
                return f"leased while paused: {task}"
        return ""

    await holds_for(1.0, still_pending)
    await page.wait_for(
        "document.querySelector('[data-count=\"pending\"] .n').textContent === arguments[0]",
        str(HELD),
        message="the pending count on the overview",
    )
    await page.screenshot("dashboard-overview.png")

    # Resume from the page: the held task runs.
    await page.script(
        'document.querySelector(\'#types tr[data-type="foo"] button[data-action="resume"]\')'
        ".click()"
    )
    for created_task in held:
        done = await wait_terminal(tasks, created_task.id)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED
    assert await type_state(cluster, "foo") == admin_service_pb2.TASK_TYPE_STATE_ACTIVE
    assert await page.script("return window.__notReloaded === true")
