"""/docs renders in real headless Chromium that can reach nothing but the API itself."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import ServedApp

pytestmark = pytest.mark.browser


@pytest.fixture
def served(app) -> Iterator[str]:
    server = ServedApp(app)
    yield server.url
    server.close()


@pytest.fixture
def offline_browser(settings) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = settings.chromium_path
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,4000",
        # No network: every host name fails to resolve, and any proxied request goes nowhere.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=127.0.0.1:9",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(settings.chromedriver_path))
    yield driver
    driver.quit()


def _requested_urls(driver: webdriver.Chrome) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_docs_list_every_operation_with_nothing_loaded_from_elsewhere(
    client, served, offline_browser, doc_shots
):
    document = client.get("/openapi.json").get_json()
    expected = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete")
    }
    expected |= {("POST", name) for name in document["webhooks"]}  # 3.1 webhooks are listed too

    offline_browser.get(f"{served}/docs")
    WebDriverWait(offline_browser, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(expected)
    )
    shown = {
        (
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.strip(),
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
        )
        for block in offline_browser.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert shown == expected
    assert "Understudy API" in offline_browser.find_element(By.CSS_SELECTOR, ".title").text
    assert offline_browser.save_screenshot(str(doc_shots / "api-docs.png"))

    urls = _requested_urls(offline_browser)
    assert any(u.endswith("/openapi.json") for u in urls)
    elsewhere = [u for u in urls if not u.startswith((served, "data:", "blob:"))]
    assert elsewhere == []
