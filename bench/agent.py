"""Benchmark the agent: the SOP engine against a hand-written Selenium script, and cold against
warm browsers. Run apart from the tests: ``python bench/agent.py [--runs N]``.

Both sides do the same clicks of a ``check_eligibility`` for the active test member against the
sandbox portal (sign-in with TOTP, payer, search, wait behind the spinner, read the table), in
one process on one machine, so the ratios are what matter; the absolute figures move with load.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sandbox  # noqa: E402
from shared import totp  # noqa: E402
from shared.accounts import Credentials  # noqa: E402
from shared.cli import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME  # noqa: E402
from shared.settings import load_settings  # noqa: E402
from shared.sops import builtin_sop  # noqa: E402
from worker.browser import new_driver  # noqa: E402
from worker.engine import run_sop  # noqa: E402

INPUTS = {"member_id": "W100000001", "patient": "Jane Doe", "dob": "1990-01-15"}
CREDENTIALS = Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET)


def serve_sandbox() -> str:
    # The hurdles stay on except the random modal, which would make runs unequal.
    app = sandbox.create_app({"modal": "never", "spinner_s": 0.3, "seed": 1})
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def _field(driver: WebDriver, label: str):
    element = driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']")
    return driver.find_element(By.ID, element.get_attribute("for"))


def _button(driver: WebDriver, text: str):
    return driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']")


def hand_written(driver: WebDriver, base_url: str) -> str:
    """What a developer would write by hand for the sandbox, with explicit waits."""
    wait = WebDriverWait(driver, 10)
    driver.get(f"{base_url}/login")
    _field(driver, "Username").send_keys(SANDBOX_USERNAME)
    _field(driver, "Password").send_keys(SANDBOX_PASSWORD)
    _button(driver, "Sign in").click()
    wait.until(
        ec.presence_of_element_located((By.XPATH, "//label[normalize-space()='One-time code']"))
    )
    _field(driver, "One-time code").send_keys(totp.code(SANDBOX_TOTP_SECRET))
    _button(driver, "Verify").click()
    wait.until(ec.presence_of_element_located((By.XPATH, "//h1[normalize-space()='Dashboard']")))
    Select(_field(driver, "Payer")).select_by_visible_text("Sandbox Health")
    continue_button = _button(driver, "Continue")
    continue_button.click()
    wait.until(ec.staleness_of(continue_button))
    wait.until(ec.element_to_be_clickable((By.LINK_TEXT, "Eligibility & Benefits"))).click()
    wait.until(ec.presence_of_element_located((By.XPATH, "//label[normalize-space()='Member ID']")))
    _field(driver, "Member ID").send_keys(INPUTS["member_id"])
    _field(driver, "Patient First Name").send_keys("Jane")
    _field(driver, "Patient Last Name").send_keys("Doe")
    _field(driver, "Date of Birth").send_keys("01/15/1990")
    _button(driver, "Search").click()
    cell = wait.until(
        ec.visibility_of_element_located((By.XPATH, "//th[normalize-space()='Plan']/../td"))
    )
    return cell.text


def by_engine(driver: WebDriver, base_url: str) -> str:
    outcome = run_sop(
        driver,
        builtin_sop("check_eligibility"),
        INPUTS,
        base_url=base_url,
        credentials=CREDENTIALS,
    )
    assert outcome.status == "completed", outcome.notes
    return outcome.notes


def timed(runs: int, once: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        once()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    settings = load_settings()
    base_url = serve_sandbox()

    def driver() -> WebDriver:
        return new_driver(
            chromium_path=settings.chromium_path, chromedriver_path=settings.chromedriver_path
        )

    browser = driver()
    try:

        def fresh(run: Callable[[WebDriver, str], object]) -> Callable[[], object]:
            # Same browser, signed out each time: both sides do the full sign-in with MFA.
            def once() -> object:
                browser.delete_all_cookies()
                return run(browser, base_url)

            return once

        fresh(hand_written)()  # warm both code paths once
        fresh(by_engine)()
        script = timed(args.runs, fresh(hand_written))
        engine = timed(args.runs, fresh(by_engine))
        browser.delete_all_cookies()
        by_engine(browser, base_url)
        warm = timed(args.runs, lambda: by_engine(browser, base_url))  # signed in already
    finally:
        browser.quit()

    def cold_once() -> None:
        fresh_browser = driver()
        try:
            by_engine(fresh_browser, base_url)
        finally:
            fresh_browser.quit()

    cold = timed(max(3, args.runs // 2), cold_once)

    med = statistics.median
    print(f"check_eligibility against the sandbox, median of {args.runs} runs (seconds)")
    print(f"  {'hand-written Selenium script':<40}{med(script):8.3f}")
    print(f"  {'SOP engine, same clicks':<40}{med(engine):8.3f}")
    print(f"  {'ratio engine / hand-written':<40}{med(engine) / med(script):8.2f}x")
    print()
    print(f"  {'cold: new browser, sign-in, MFA':<40}{med(cold):8.3f}")
    print(f"  {'warm: reused browser and session':<40}{med(warm):8.3f}")
    print(f"  {'ratio cold / warm':<40}{med(cold) / med(warm):8.2f}x")


if __name__ == "__main__":
    main()
