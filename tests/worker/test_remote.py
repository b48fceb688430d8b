"""SELENIUM_REMOTE_URL: the agent drives a browser over W3C WebDriver, as on a Selenium Grid."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME
from shared.accounts import Credentials
from shared.sop.library import builtin_sop
from tests.conftest import free_port
from tests.worker.support import QuietHandler, loopback_server
from worker.agent.interpreter import run_sop
from worker.browser import egress_of, new_driver, quit_quietly
from worker.egress import Origin


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


def test_a_remote_browser_is_fenced_in_by_the_workers_egress_proxy(
    settings, sandbox_url, webdriver_server
):
    # A page on another loopback port, which the remote browser could otherwise reach
    hits: list[str] = []

    class Canary(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            hits.append(self.path)
            self.reply(204)

    with loopback_server(Canary) as canary_url:
        driver = new_driver(
            chromium_path=settings.chromium_path,
            chromedriver_path=settings.chromedriver_path,
            remote_url=webdriver_server,
            page_load_timeout_s=10,
        )
        try:
            egress = egress_of(driver)
            egress.allow([Origin.of(sandbox_url, allow_private=True)])
            driver.get(f"{sandbox_url}/login")
            on_portal = driver.find_element("tag name", "h1").text
            driver.get(f"{sandbox_url}/__sandbox/hostile/frame?url={canary_url}/framed")
            driver.get(f"{canary_url}/navigated")
            refused = {r.url for r in egress.refusals()}
        finally:
            quit_quietly(driver)
    assert on_portal == "Sign in to Sandbox Payer Portal"
    assert egress.requests > 0  # the portal itself was reached through the proxy
    assert hits == []
    assert {f"{canary_url}/framed", f"{canary_url}/navigated"} <= refused
