"""A real headless Chromium for the dashboard tests, driven by Selenium through ChromeDriver.

Debian's ``chromium`` and ``chromium-driver`` packages provide both binaries (``.ci/run``
installs them). Where they are missing the browser tests skip with the command that
installs them, unless ``ORCHESTRATOR_REQUIRE_BROWSER=1`` (set by CI) makes that a failure:
nothing is silently skipped in CI.

Selenium is synchronous; the tests call it through ``asyncio.to_thread`` so the event loop
(and the test's gRPC channels) keep running while the browser works.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

CHROMIUM = os.environ.get("ORCHESTRATOR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ORCHESTRATOR_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL = "apt-get install chromium chromium-driver"


def require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists() and not shutil.which(p)]
    if not missing:
        return
    reason = f"no headless browser here ({', '.join(missing)} missing): {INSTALL}"
    if os.environ.get("ORCHESTRATOR_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def chromium(profile_dir: Path, width: int = 1360, height: int = 1000) -> Iterator[object]:
    """A WebDriver for a fresh headless Chromium; quits on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        # This machine has no network beyond loopback: keep Chromium from trying.
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile_dir}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(
    driver: object,
    condition: Callable[[object], T | bool | None],
    timeout: float = 15.0,
    message: str = "",
) -> T:
    """Poll ``condition(driver)`` until it is truthy (Selenium's own poll with a deadline)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(  # type: ignore[arg-type]
        condition, message
    )
