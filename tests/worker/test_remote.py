"""SELENIUM_REMOTE_URL: the agent drives a browser over W3C WebDriver, as on a Selenium Grid."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from shared.accounts import Credentials
from shared.cli import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME
from shared.sops import builtin_sop
from tests.conftest import free_port
from worker.browser import new_driver, quit_quietly
from worker.engine import run_sop


@pytest.fixture
def webdriver_server(settings):
    """chromedriver's own W3C server: the same protocol a Grid hub speaks."""
    port = free_port()
    process = subprocess.Popen(
        [settings.chromedriver_path, f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/status", timeout=1).json()["value"]["ready"]:
                break
        except requests.RequestException:
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_an_eligibility_check_runs_through_a_remote_webdriver(
    settings, sandbox_url, webdriver_server
):
    requests.post(f"{sandbox_url}/__sandbox/faults", json={"spinner_s": 0.2}, timeout=5)
    driver = new_driver(
        chromium_path=settings.chromium_path,
        chromedriver_path=settings.chromedriver_path,
        remote_url=webdriver_server,
    )
    try:
        outcome = run_sop(
            driver,
            builtin_sop("check_eligibility"),
            {"member_id": "W100000001", "patient": "Jane Doe", "dob": "1990-01-15"},
            base_url=sandbox_url,
            credentials=Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET),
        )
        # the session lives on that server: it answers for it over the wire protocol
        current = requests.get(f"{webdriver_server}/session/{driver.session_id}/url", timeout=5)
        assert current.json()["value"].startswith(sandbox_url)
    finally:
        quit_quietly(driver)
    assert outcome.status == "completed"
    assert "Sandbox Gold PPO" in outcome.notes
