"""One real-browser smoke test: headless Chromium signs in with MFA and reads eligibility."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.common.exceptions import ElementClickInterceptedException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

import sandbox
from tests.conftest import ServedApp
from worker.browser import egress_of, new_driver, quit_quietly
from worker.egress import Origin

from .helpers import MFA_USER, totp_now


@pytest.fixture
def served() -> Iterator[str]:
    app = ServedApp(
        sandbox.create_app({"modal": "always", "spinner_s": 3.0, "SECRET_KEY": "browser"})
    )
    yield app.url
    app.close()


@pytest.fixture
def driver(settings, served: str) -> Iterator[WebDriver]:
    # The agent's own browser setup: explicit Chromium and chromedriver paths, headless flags,
    # fenced in to the portal's origin as a task's browser is.
    d = new_driver(
        chromium_path=settings.chromium_path, chromedriver_path=settings.chromedriver_path
    )
    egress_of(d).allow([Origin.of(served, allow_private=True)])
    yield d
    quit_quietly(d)


def by_label(d: WebDriver, text: str) -> WebElement:
    """Locate a control as SOPs do: through its <label for=...>."""
    label = d.find_element(By.XPATH, f"//label[normalize-space()='{text}']")
    return d.find_element(By.ID, label.get_attribute("for"))


def button(d: WebDriver, text: str) -> WebElement:
    return d.find_element(By.XPATH, f"//button[normalize-space()='{text}']")


def test_sign_in_with_mfa_and_search_eligibility(served: str, driver: WebDriver) -> None:
    wait = WebDriverWait(driver, 20)  # generous: CI machines are shared and noisy
    driver.get(served + "/login")
    by_label(driver, "Username").send_keys(MFA_USER[0])
    by_label(driver, "Password").send_keys(MFA_USER[1])
    button(driver, "Sign in").click()

    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Two-step verification"))
    by_label(driver, "One-time code").send_keys(totp_now())
    button(driver, "Verify").click()

    # The announcement is a real overlay: clicks on the page underneath are intercepted.
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]")))
    with pytest.raises(ElementClickInterceptedException):
        button(driver, "Continue").click()
    button(driver, "Dismiss").click()
    wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]")))

    Select(by_label(driver, "Payer")).select_by_visible_text("Sandbox Health")
    button(driver, "Continue").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Current payer"))

    driver.find_element(By.LINK_TEXT, "Eligibility & Benefits").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Eligibility & Benefits"))
    for label, value in (
        ("Member ID", "W100000001"),
        ("Patient First Name", "Jane"),
        ("Patient Last Name", "Doe"),
        ("Date of Birth", "01/15/1990"),
    ):
        by_label(driver, label).send_keys(value)
    button(driver, "Search").click()

    # Spinner first (long enough to be seen between polls on a loaded machine), then the table.
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[role=status]")))
    table = wait.until(
        ec.presence_of_element_located(
            (By.XPATH, "//table[caption[normalize-space()='Eligibility Result']]")
        )
    )
    rows = {
        tr.find_element(By.TAG_NAME, "th").text: tr.find_element(By.TAG_NAME, "td").text
        for tr in table.find_elements(By.TAG_NAME, "tr")
    }
    assert rows["Member ID"] == "W100000001"
    assert rows["Coverage Status"] == "Active"
    assert rows["Plan"] == "Sandbox Gold PPO"
    assert rows["Copay"] == "$25.00"
    assert not driver.find_elements(By.CSS_SELECTOR, "[role=status]")
