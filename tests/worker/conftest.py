"""Fixtures for the engine tests: one real headless Chromium for the whole session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.remote.webdriver import WebDriver

from tests.worker.support import (
    FAST_FAULTS,
    ListRecorder,
    LocalFile,
    browser_pool,
    sandbox_runtime,
)
from worker.browser import new_driver, quit_quietly

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_PATH", "/usr/bin/chromedriver")


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        message = f"Chromium not installed: {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def session_driver() -> Iterator[WebDriver]:
    _require_browser()
    driver = new_driver(
        chromium_path=CHROMIUM, chromedriver_path=CHROMEDRIVER, page_load_timeout_s=15
    )
    yield driver
    quit_quietly(driver)


@pytest.fixture
def driver(session_driver: WebDriver) -> WebDriver:
    """The shared browser with no cookies, so every test starts signed out."""
    session_driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    session_driver.get("about:blank")
    return session_driver


@pytest.fixture
def portal(sandbox_url: str) -> Callable[..., str]:
    """Set sandbox fault switches (FAST_FAULTS plus overrides); returns the base URL."""

    def configure(**faults: Any) -> str:
        body = {**FAST_FAULTS, **faults}
        requests.post(f"{sandbox_url}/__sandbox/faults", json=body, timeout=5).raise_for_status()
        return sandbox_url

    configure()
    return configure


@pytest.fixture
def recorder() -> ListRecorder:
    return ListRecorder()


@pytest.fixture
def task_files(tmp_path: Path) -> Callable[..., list[LocalFile]]:
    def make(*names: str) -> list[LocalFile]:
        out = []
        for name in names:
            path = tmp_path / name
            path.write_bytes(b"%PDF-1.4\n% test document " + name.encode() + b"\n")
            out.append(LocalFile(name, str(path)))
        return out

    return make


@pytest.fixture(scope="module")
def browsers(settings):
    """The worker's pool of signed-in browsers, one per test module."""
    pool = browser_pool(settings)
    yield pool
    pool.close()


@pytest.fixture
def rt(runtime, sandbox_url):
    """The runtime a worker has, pointed at the sandbox (a module may override it)."""
    return sandbox_runtime(runtime, sandbox_url)
