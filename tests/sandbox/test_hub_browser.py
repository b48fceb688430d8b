"""Care Hub in headless Chromium: a person's path through the single-page portal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

import sandbox
from tests.conftest import ServedApp
from tests.worker.conftest import CHROMEDRIVER, CHROMIUM
from worker.browser import egress_of, new_driver, quit_quietly
from worker.egress import Origin

pytestmark = pytest.mark.browser


@pytest.fixture
def served() -> Iterator[str]:
    app = ServedApp(sandbox.create_app({"spinner_s": 0.5, "SECRET_KEY": "hub"}))
    yield app.url
    app.close()


@pytest.fixture
def driver(served: str) -> Iterator[WebDriver]:
    d = new_driver(chromium_path=CHROMIUM, chromedriver_path=CHROMEDRIVER)
    egress_of(d).allow([Origin.of(served, allow_private=True)])
    yield d
    quit_quietly(d)


def labelled(root, text: str):
    """A control by its <label> text, in the document or a shadow root."""
    for label in root.find_elements(By.CSS_SELECTOR, "label"):
        if label.text.strip() == text:
            return root.find_element(By.ID, label.get_attribute("for"))
    raise AssertionError(f"no label {text!r}")


def button(d: WebDriver, text: str):
    return d.find_element(By.XPATH, f"//button[normalize-space()='{text}']")


def test_sign_in_look_up_eligibility_in_the_frame_and_go_back(
    served: str, driver: WebDriver
) -> None:
    wait = WebDriverWait(driver, 20)
    heading = (By.TAG_NAME, "h1")
    driver.get(served + "/hub/eligibility")
    # Signed out, the app sends the browser to its sign-in screen, remembering where it was.
    wait.until(ec.text_to_be_present_in_element(heading, "Sign in to Care Hub"))
    assert "/hub/signin?next=%2Fhub%2Feligibility" in driver.current_url

    labelled(driver, "Email address").send_keys("mail@sandbox")
    button(driver, "Send passcode").click()
    wait.until(ec.text_to_be_present_in_element(heading, "Enter your passcode"))
    code = requests.get(served + "/__sandbox/hub/outbox", timeout=5).json()["mail@sandbox"]
    labelled(driver, "Passcode").send_keys(code)
    button(driver, "Sign in").click()
    wait.until(ec.text_to_be_present_in_element(heading, "Eligibility lookup"))

    # The screen changed without a page load: the document is the one loaded at the start.
    driver.execute_script("window.__marker = 'same document'")
    # The member's fields are in a shadow root: not found from the document.
    assert not driver.find_elements(By.XPATH, "//label[normalize-space()='Member ID']")
    shadow = driver.find_element(By.TAG_NAME, "member-fields").shadow_root
    labelled(shadow, "Member ID").send_keys("W100000001")
    labelled(shadow, "Last name").send_keys("Doe")
    labelled(shadow, "Date of birth").send_keys("01/15/1990")
    # The coverage type is a listbox opened by a button, not a <select>.
    assert not driver.find_elements(By.TAG_NAME, "select")
    driver.find_element(By.CSS_SELECTOR, "[role=combobox]").click()
    driver.find_element(By.XPATH, "//*[@role='option'][normalize-space()='Medical']").click()
    button(driver, "Look up").click()

    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
    assert frame.get_attribute("title") == "Eligibility result"
    driver.switch_to.frame(frame)
    wait.until(ec.presence_of_element_located((By.TAG_NAME, "table")))
    cells = {
        row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
        for row in driver.find_elements(By.TAG_NAME, "tr")
    }
    driver.switch_to.default_content()
    assert cells["Coverage Status"] == "Active"
    assert cells["Plan"] == "Sandbox Gold PPO"

    driver.find_element(By.LINK_TEXT, "Claim status").click()
    wait.until(ec.text_to_be_present_in_element(heading, "Claim status"))
    driver.find_element(By.CSS_SELECTOR, "input[aria-label='Claim number']").send_keys(
        "CLM-DENY-0003"
    )
    button(driver, "Find claim").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "dl"), "Service not covered"))

    driver.back()  # history works: the previous screen is drawn again
    wait.until(ec.text_to_be_present_in_element(heading, "Eligibility lookup"))
    assert driver.execute_script("return window.__marker") == "same document"


def test_an_expired_session_returns_to_sign_in_with_a_notice(
    served: str, driver: WebDriver
) -> None:
    wait = WebDriverWait(driver, 20)
    heading = (By.TAG_NAME, "h1")
    driver.get(served + "/hub/signin")
    wait.until(ec.text_to_be_present_in_element(heading, "Sign in to Care Hub"))
    labelled(driver, "Email address").send_keys("mail@sandbox")
    button(driver, "Send passcode").click()
    wait.until(ec.text_to_be_present_in_element(heading, "Enter your passcode"))
    labelled(driver, "Passcode").send_keys("000000")
    button(driver, "Sign in").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[role=alert]"), "not valid"))
    code = requests.get(served + "/__sandbox/hub/outbox", timeout=5).json()["mail@sandbox"]
    labelled(driver, "Passcode").send_keys(code)
    button(driver, "Sign in").click()
    wait.until(ec.text_to_be_present_in_element(heading, "Care Hub"))

    requests.post(served + "/__sandbox/hub/expire", timeout=5).raise_for_status()
    driver.find_element(By.LINK_TEXT, "Claim status").click()
    wait.until(ec.text_to_be_present_in_element(heading, "Sign in to Care Hub"))
    alert = driver.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert alert == "Your session has expired. Please sign in again."
